"""Overflow of work the cluster cannot serve to virtual-kubelet and ECI nodes."""

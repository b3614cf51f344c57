"""Domain model shared by every slotwise package: resources, nodes, pods and the cluster snapshot."""

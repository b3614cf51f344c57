"""A real Kubernetes control plane on loopback for the end-to-end tests (cluster.py, build.sh)."""

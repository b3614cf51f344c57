"""Placement: the domain model (resources, nodes, pods, snapshot) and the placement engine."""

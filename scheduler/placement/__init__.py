"""Placement engine: filters, pluggable scoring policies and device assignment, all pure."""

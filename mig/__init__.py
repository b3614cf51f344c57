"""MIG: slice catalog, slot geometry and repartition planning."""

"""Project resource pools: guaranteed, shareable and borrowed capacity."""

"""How a simulation runs: ``fill`` (the FGD paper's method: pods arrive, never leave, and the
workload is inflated past capacity) or ``timeline`` (pods arrive and leave at their times)."""

from __future__ import annotations

from typing import Literal

Mode = Literal["fill", "timeline"]

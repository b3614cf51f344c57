"""Burst spend over simulated time: what each pool reserved or spent per day and per 30-day
month, against its budget. (The live store keeps the same ledger in SQL, by calendar day and
month.)"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from quota.config import Budget

DAY_S = 86400.0
MONTH_S = 30 * DAY_S


@dataclass(slots=True)
class _Entry:
    pool: str
    at: float
    amount: float  # reserved, then what it cost once it ended


class SpendLedger:
    def __init__(self, budgets: Mapping[str, Budget]):
        self.budgets = dict(budgets)
        self._entries: dict[str, _Entry] = {}

    def left(self, pool: str, at: float) -> float | None:
        """What ``pool`` may still reserve at ``at`` (None: no budget, so no burst)."""
        budget = self.budgets.get(pool)
        if budget is None or (budget.per_day is None and budget.per_month is None):
            return None
        left = float("inf")
        for limit, span in ((budget.per_day, DAY_S), (budget.per_month, MONTH_S)):
            if limit is not None:
                window = at // span
                used = sum(e.amount for e in self._entries.values() if e.pool == pool and e.at // span == window)
                left = min(left, limit - used)
        return max(left, 0.0)

    def reserve(self, pool: str, key: str, amount: float, at: float) -> None:
        left = self.left(pool, at)
        if left is not None and amount > left + 1e-9:
            raise ValueError(f"pool {pool}: reserving {amount:.2f} passes its burst budget ({left:.2f} left)")
        self._entries[key] = _Entry(pool, at, amount)

    def settle(self, key: str, cost: float) -> None:
        """What the burst cost, never more than it reserved."""
        entry = self._entries[key]
        entry.amount = min(cost, entry.amount)

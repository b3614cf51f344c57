"""Who uses what and who borrows from whom: the ledger read as an admin wants it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from quota.config import UNLIMITED
from quota.ledger import Ledger


@dataclass(frozen=True, slots=True)
class PoolUsage:
    """One pool and resource. ``borrowed``: taken from its parent above its guarantee;
    ``lent``: of its guarantee, what others use now."""

    pool: str
    parent: str | None
    resource: str
    guaranteed: int
    max: int | None
    used: int
    borrowed: int
    lent: int
    workloads: int


@dataclass(frozen=True, slots=True)
class Loan:
    borrower: str
    lender: str
    resource: str
    amount: int


def lenders_at(ledger: Ledger, parent: int, borrower: int) -> list[tuple[str, np.ndarray]]:
    """Who may lend to ``borrower`` among ``parent``'s children, in the order loans are credited:
    siblings with idle lendable guarantee (public pools first, then the largest), then the
    parent's own guarantee that no child holds (credited to the parent)."""
    children = ledger.children[parent]
    siblings = sorted((s for s in children if s != borrower),
                      key=lambda s: (not ledger.public[s], -int(ledger.idle_lendable(s).sum()), s))
    unassigned = np.maximum(ledger.guaranteed[parent] - sum((ledger.guaranteed[c] for c in children),
                                                            np.zeros(len(ledger.resources), dtype=np.int64)), 0)
    return [(ledger.names[s], ledger.idle_lendable(s)) for s in siblings] + [(ledger.names[parent], unassigned)]


def loans(ledger: Ledger) -> list[Loan]:
    """Every pool's borrowing credited to lenders among its siblings, level by level; what a
    level cannot lend shows as its parent borrowing one level up."""
    out: list[Loan] = []
    for parent in range(len(ledger.names)):
        order = lenders_at(ledger, parent, -1)  # a borrower's order is this one without itself
        left = {name: idle.copy() for name, idle in order}
        for child in ledger.children[parent]:
            need = ledger.borrowing(child).copy()
            for name in (name for name, _ in order if name != ledger.names[child]):
                lent = np.minimum(need, left[name])
                for j in np.flatnonzero(lent):
                    out.append(Loan(ledger.names[child], name, ledger.resources[j], int(lent[j])))
                left[name] -= lent
                need -= lent
    return out


def pool_usage(ledger: Ledger, credited: Sequence[Loan] | None = None) -> list[PoolUsage]:
    """Each pool and resource; ``credited``: :func:`loans`, if the caller has them already."""
    lent: dict[tuple[str, str], int] = {}
    for loan in loans(ledger) if credited is None else credited:
        lent[loan.lender, loan.resource] = lent.get((loan.lender, loan.resource), 0) + loan.amount
    counts = [0] * len(ledger.names)  # workloads in each pool's subtree
    for q, charged in enumerate(ledger.by_pool):
        for a in ledger.paths[q]:
            counts[a] += len(charged)
    rows = []
    for i, name in enumerate(ledger.names[1:], start=1):
        parent = ledger.names[ledger.parent[i]] if ledger.parent[i] > 0 else None
        borrowing = ledger.borrowing(i)
        for j, resource in enumerate(ledger.resources):
            cap = int(ledger.max[i, j])
            rows.append(PoolUsage(name, parent, resource, int(ledger.guaranteed[i, j]), None if cap >= UNLIMITED else cap,
                                  int(ledger.usage[i, j]), int(borrowing[j]), lent.get((name, resource), 0),
                                  counts[i]))
    return rows

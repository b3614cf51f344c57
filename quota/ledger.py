"""The quota ledger: the pool tree as arrays, and every admitted workload charged to it.

Rows are pools (row 0 is the cluster, the root), columns the resources the configuration
governs. For each pool the ledger keeps its subtree's usage ``U`` and its *claim* on its parent:
the larger of what its subtree holds and the part of its guarantee it never lends
(``guaranteed - shareable``). A parent's claims from its children plus its own workloads must fit
in the cluster at the root. So a private guarantee stays reserved while idle, a shareable one is
lent while idle, and borrowing is whatever goes above a pool's guarantee.

Adding or removing a workload updates one path from its pool to the root, so checks and updates
cost the tree's depth, not its size. The ledger refuses anything that would break a limit.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from quota.config import UNLIMITED, QuotaConfig, children_by_parent, guarantees
from scheduler.model.resources import GPU, Resources, format_quota_amount, is_gpu_quota

CLUSTER = "cluster"


class QuotaExceeded(ValueError):
    """A charge the ledger refuses: it would break a pool's max, borrow limit or the cluster."""


@dataclass(frozen=True, slots=True)
class Workload:
    """A unit of admission: one pod, or a whole gang, charged to one pool."""

    key: str
    pool: str
    charge: Resources
    priority: int = 0
    admitted_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Violation:
    """The first limit a charge would break: where, on which resource, and which limit."""

    pool: int
    column: int
    limit: str  # "max" | "borrow_limit" | "capacity"


class Ledger:
    def __init__(self, config: QuotaConfig, capacity: Mapping[str, int] | None = None):
        """``capacity``: what the cluster holds, in quota units; without it, the cluster holds
        exactly the top-level pools' guarantees."""
        self.config = config
        self.names: tuple[str, ...] = (CLUSTER, *(p.name for p in config.pools))
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"pool name {CLUSTER!r} is reserved for the cluster")
        self.row = {name: i for i, name in enumerate(self.names)}
        self.parent = np.array([-1] + [self.row[p.parent or CLUSTER] for p in config.pools], dtype=np.int64)
        self.resources: tuple[str, ...] = tuple(sorted({r for p in config.pools for _, lim in p.limits() for r in lim}))
        self.column = {r: j for j, r in enumerate(self.resources)}
        n, k = len(self.names), len(self.resources)

        guarantee = guarantees(children_by_parent(config.pools))
        self.guaranteed = np.zeros((n, k), dtype=np.int64)
        self.reserved = np.zeros((n, k), dtype=np.int64)  # guaranteed - shareable: never lent
        self.max = np.full((n, k), UNLIMITED, dtype=np.int64)
        self.borrow_limit = np.full((n, k), UNLIMITED, dtype=np.int64)
        self.weight = np.ones(n)
        self.public = np.zeros(n, dtype=bool)
        for i, p in enumerate(config.pools, start=1):
            self.guaranteed[i] = self.vector(guarantee(p))
            shareable = self.guaranteed[i] if p.public else self.vector(p.shareable)
            self.reserved[i] = self.guaranteed[i] - shareable
            self._set(self.max[i], p.max)
            self._set(self.borrow_limit[i], p.borrow_limit)
            self.weight[i] = p.weight
            self.public[i] = p.public
        top = self.parent == 0
        self.guaranteed[0] = self.vector(capacity) if capacity is not None else self.guaranteed[top].sum(axis=0)
        self.reserved[0] = self.guaranteed[0]

        self.paths: tuple[tuple[int, ...], ...] = tuple(tuple(self._path(i)) for i in range(n))
        children: list[list[int]] = [[] for _ in range(n)]
        for c in range(1, n):
            children[self.parent[c]].append(c)
        self.children: tuple[tuple[int, ...], ...] = tuple(map(tuple, children))
        self.usage = np.zeros((n, k), dtype=np.int64)  # the subtree's
        self.own = np.zeros((n, k), dtype=np.int64)  # charged to the pool itself
        self.demand = np.zeros((n, k), dtype=np.int64)  # own + children's claims
        self.claim = self.reserved.copy()  # max(demand, reserved), seen by the parent
        for i in range(n - 1, 0, -1):  # children come after parents in the configuration
            self.claim[i] = np.maximum(self.demand[i], self.reserved[i])  # children's claims are all in
            self.demand[self.parent[i]] += self.claim[i]
        self.claim[0] = np.maximum(self.demand[0], self.reserved[0])
        self.workloads: dict[str, tuple[Workload, int, np.ndarray]] = {}
        self.by_pool: list[dict[str, Workload]] = [{} for _ in range(n)]
        #: Reclaim victims given their grace period: still charged (they still run), no longer
        #: candidates for another reclaim.
        self.terminating: set[str] = set()
        self._order: dict[int, list[Workload]] = {}

    # Vectors ----------------------------------------------------------------------------------
    def vector(self, amounts: Mapping[str, int]) -> np.ndarray:
        """Amounts on the governed columns; resources no pool names are not governed."""
        out = np.zeros(len(self.resources), dtype=np.int64)
        for r, v in amounts.items():
            j = self.column.get(r)
            if j is not None:
                out[j] = v
        return out

    def _set(self, row: np.ndarray, amounts: Mapping[str, int]) -> None:
        for r, v in amounts.items():
            row[self.column[r]] = v

    def _path(self, i: int) -> Iterator[int]:
        while i >= 0:
            yield i
            i = int(self.parent[i])

    def in_subtree(self, pool: int, top: int) -> bool:
        return top in self.paths[pool]

    def amounts(self, row: np.ndarray) -> Resources:
        return Resources(zip(self.resources, row.tolist()))

    def amount(self, column: int, amount: int) -> str:
        return format_quota_amount(self.resources[column], int(amount))

    def label(self, column: int, amount: int) -> str:
        """An amount as an admin reads it: ``8 GPU (A100)``, ``16Gi memory``."""
        resource = self.resources[column]
        text = self.amount(column, amount)
        if resource == GPU:
            return f"{text} GPU"
        if is_gpu_quota(resource):
            return f"{text} GPU ({resource.removeprefix(GPU + '/')})"
        return f"{text} {resource}"

    # Checks -----------------------------------------------------------------------------------
    def violation(self, pool: int, vec: np.ndarray) -> Violation | None:
        """The first limit that adding ``vec`` to ``pool`` would break, walking up to the root;
        only resources the charge uses are judged."""
        used = vec > 0
        a = pool
        demand = self.demand[a] + vec
        while True:
            after = self.usage[a] + vec
            for limit, bound in (("max", self.max[a]), ("borrow_limit", self.guaranteed[a] + self.borrow_limit[a])):
                bad = used & (after > bound)
                if bad.any():
                    return Violation(a, int(np.argmax(bad)), limit)
            parent = int(self.parent[a])
            if parent < 0:
                bad = used & (demand > self.guaranteed[a])
                return Violation(a, int(np.argmax(bad)), "capacity") if bad.any() else None
            delta = np.maximum(demand, self.reserved[a]) - self.claim[a]
            demand = self.demand[parent] + delta
            a = parent

    def shortfall(self, pool: int, vec: np.ndarray) -> np.ndarray:
        """How far the cluster's claims would exceed its capacity with ``vec`` added to ``pool``
        (zero where they fit): the least a reclaim must free."""
        a = pool
        demand = self.demand[a] + vec
        while self.parent[a] >= 0:
            parent = int(self.parent[a])
            demand = self.demand[parent] + np.maximum(demand, self.reserved[a]) - self.claim[a]
            a = parent
        return np.where(vec > 0, np.maximum(demand - self.guaranteed[0], 0), 0)

    def entitled(self, pool: int, vec: np.ndarray) -> int | None:
        """The closest pool on the path (``pool`` itself or an ancestor, never the cluster) whose
        guarantee would still hold ``vec`` with the reserves its children keep; None if none would."""
        used = vec > 0
        a = pool
        demand = self.demand[a] + vec
        while self.parent[a] >= 0:
            if not (used & (demand > self.guaranteed[a])).any():
                return a
            parent = int(self.parent[a])
            demand = self.demand[parent] + np.maximum(demand, self.reserved[a]) - self.claim[a]
            a = parent
        return None

    def fits(self, pool: int, vec: np.ndarray) -> bool:
        return self.violation(pool, vec) is None

    # Changes ----------------------------------------------------------------------------------
    def add(self, workload: Workload, *, force: bool = False) -> None:
        """Charge ``workload``; refuses (and changes nothing) if a limit would break, unless
        ``force`` (for work already running when the ledger is built)."""
        if workload.key in self.workloads:
            raise ValueError(f"workload {workload.key} is already charged")
        if workload.pool not in self.row:
            raise KeyError(f"unknown pool {workload.pool!r}")
        i = self.row[workload.pool]
        vec = self.vector(workload.charge)
        if not force:
            v = self.violation(i, vec)
            if v is not None:
                raise QuotaExceeded(f"workload {workload.key}: {self.describe(v)}")
        self._apply(i, vec)
        self.workloads[workload.key] = (workload, i, vec)
        self.by_pool[i][workload.key] = workload
        self._order.pop(i, None)

    def remove(self, key: str) -> Workload:
        workload, i, vec = self.workloads.pop(key)
        self.terminating.discard(key)
        del self.by_pool[i][key]
        self._order.pop(i, None)
        self._apply(i, -vec)
        return workload

    def _apply(self, pool: int, vec: np.ndarray) -> None:
        self.own[pool] += vec
        delta = vec
        for a in self.paths[pool]:
            self.usage[a] += vec
            self.demand[a] += delta
            claim = np.maximum(self.demand[a], self.reserved[a])
            delta = claim - self.claim[a]
            self.claim[a] = claim

    def copy(self) -> Ledger:
        """An independent ledger with the same charges. What the configuration fixes (names,
        limits, paths) is shared; what charges change is copied, far cheaper than charging every
        workload again."""
        clone = copy.copy(self)
        clone.usage, clone.own = self.usage.copy(), self.own.copy()
        clone.demand, clone.claim = self.demand.copy(), self.claim.copy()
        clone.workloads = dict(self.workloads)  # entries are never changed in place, only replaced
        clone.by_pool = [dict(d) for d in self.by_pool]
        clone.terminating = set(self.terminating)
        clone._order = {}
        return clone

    def charged(self) -> Iterable[Workload]:
        return (w for w, _, _ in self.workloads.values())

    # Reading ----------------------------------------------------------------------------------
    def describe(self, v: Violation) -> str:
        name, col = self.names[v.pool], v.column
        if v.limit == "max":
            return f"pool {name} is at its max of {self.label(col, self.max[v.pool, col])}"
        if v.limit == "borrow_limit":
            return (f"pool {name} may borrow at most {self.label(col, self.borrow_limit[v.pool, col])} above its "
                    f"guarantee of {self.label(col, self.guaranteed[v.pool, col])}")
        free = max(0, int(self.guaranteed[0, col] - self.demand[0, col]))
        return f"the cluster has {self.label(col, free)} idle that is not reserved"

    def room(self, pool: int, column: int) -> int:
        """The most of one resource ``pool`` could take now without reclaiming anything: the
        tightest max and borrow limit on the path, and the cluster's free capacity plus the
        reserves along the path that the amount would fill before it claims anything more."""
        bound = UNLIMITED
        slack = 0
        for a in self.paths[pool]:
            bound = min(bound, int(self.max[a, column] - self.usage[a, column]),
                        int(self.guaranteed[a, column] + self.borrow_limit[a, column] - self.usage[a, column]))
            if self.parent[a] >= 0:
                slack += int(self.claim[a, column] - self.demand[a, column])
        free = int(self.guaranteed[0, column] - self.demand[0, column])
        return max(0, min(bound, slack + free))

    def reclaim_order(self, pool: int) -> list[Workload]:
        """The pool's workloads, lowest priority then newest first (cached until it changes)."""
        order = self._order.get(pool)
        if order is None:
            order = self._order[pool] = sorted(self.by_pool[pool].values(),
                                               key=lambda w: (w.priority, -w.admitted_at, w.key))
        return order

    def borrowing(self, pool: int) -> np.ndarray:
        """What the pool takes from its parent beyond its guarantee: its subtree's usage plus the
        reserves its children keep, above its guarantee."""
        return np.maximum(self.demand[pool] - self.guaranteed[pool], 0)

    def idle_lendable(self, pool: int) -> np.ndarray:
        """The part of the pool's guarantee it lends and does not use itself (nor its children
        keep in reserve)."""
        lendable = self.guaranteed[pool] - self.reserved[pool]
        return np.clip(self.guaranteed[pool] - self.demand[pool], 0, lendable)

    def dominant_share(self, pool: int) -> float:
        """Weighted DRF: the largest share of the cluster the pool's subtree uses, over its weight."""
        capacity = self.guaranteed[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            shares = np.where(capacity > 0, self.usage[pool] / np.maximum(capacity, 1), 0.0)
        return float(shares.max(initial=0.0)) / self.weight[pool]

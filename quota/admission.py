"""Quota decisions for a pod or a whole gang: admit within the guarantee, admit by borrowing idle
capacity (from whom), reclaim lent capacity (which victims), wait, or deny, each with its reason.

Pure: it reads a :class:`~quota.ledger.Ledger` and returns a decision; the caller charges the
ledger, evicts victims and records the decision. GPU models are chosen the way Kueue assigns
flavours: a GPU request that may run on several governed models is tried on each in turn, and
takes the first one where it fits without borrowing, else the first where it fits by borrowing,
else the first where a reclaim frees room.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from dataclasses import dataclass

import numpy as np

from quota.config import UNLIMITED
from quota.ledger import Ledger, Workload
from quota.usage import lenders_at
from scheduler.model.cluster import Pod
from scheduler.model.gpu_models import accepts_model
from scheduler.model.resources import GPU, GPU_MILLI, PODS, Resources, gpu_quota_resource, is_gpu_quota

#: Decides whether evicting these workloads frees capacity the request can really use (placement
#: on nodes, not only quota arithmetic). The default trusts the arithmetic.
Usable = Callable[[Sequence[Workload]], bool]


@dataclass(frozen=True, slots=True)
class Request:
    """A pod or a whole gang asking to be admitted into ``pool``."""

    key: str
    pool: str
    charge: Resources  # GPUs in milli-GPU under nvidia.com/gpu, no model yet
    priority: int = 0
    #: GPU models the work accepts (None: any).
    gpu_models: frozenset[str] | None = None

    def charged(self, gpu_model: str | None, now: float) -> Workload:
        return Workload(self.key, self.pool, with_model(self.charge, gpu_model), self.priority, now)


def pod_charge(pod: Pod) -> Resources:
    """What a pod draws from quota: its requests and one pod, GPUs as milli-GPU (a 250m share
    and a whole GPU draw on the same budget)."""
    base = pod.requests.without((GPU, GPU_MILLI)) + {PODS: 1}
    return base + {GPU: pod.gpu.total_milli} if pod.gpu is not None else base


def request_for(key: str, pods: Sequence[Pod]) -> Request:
    """The request of one pod or of a gang (all members, one project, one priority)."""
    charge = Resources()
    for pod in pods:
        charge = charge + pod_charge(pod)
    models = {p.gpu.models for p in pods if p.gpu is not None and p.gpu.models is not None}
    allowed = frozenset.intersection(*models) if models else None
    return Request(key, pods[0].project, charge, max(p.priority for p in pods), allowed)


def with_model(charge: Resources, gpu_model: str | None) -> Resources:
    return charge if gpu_model is None or not charge[GPU] else charge + {gpu_quota_resource(gpu_model): charge[GPU]}


@dataclass(frozen=True, slots=True)
class Admit:
    """Admit now. ``borrowed`` is what goes above the pool's own guarantee; ``lenders`` who
    lends it (pool, amounts), public pools first."""

    request: Request
    gpu_model: str | None
    borrowed: Resources
    lenders: tuple[tuple[str, Resources], ...]
    reason: str

    @property
    def kind(self) -> str:
        return "borrow" if self.borrowed else "admit"


@dataclass(frozen=True, slots=True)
class Reclaim:
    """The pool is owed this capacity but lent it: evict ``victims`` (whole workloads), then admit.
    The caller charges the request at once and keeps the victims charged and marked terminating
    until they are gone, so their pools stay within their limits meanwhile and nobody else takes
    the capacity."""

    request: Request
    gpu_model: str | None
    victims: tuple[Workload, ...]
    reason: str
    kind: str = "reclaim"


@dataclass(frozen=True, slots=True)
class Wait:
    request: Request
    reason: str
    kind: str = "wait"


@dataclass(frozen=True, slots=True)
class Deny:
    """The request can never be admitted as configured (above a max, unknown pool)."""

    request: Request
    reason: str
    kind: str = "deny"


QuotaDecision = Admit | Reclaim | Wait | Deny


def decide(
    ledger: Ledger, request: Request, now: float, min_loan_s: float | None = None, usable: Usable | None = None
) -> QuotaDecision:
    """The decision for ``request`` at time ``now``; ``min_loan_s`` defaults to the configuration's."""
    if request.pool not in ledger.row or request.pool == ledger.names[0]:
        return Deny(request, f"no pool {request.pool!r}; pods are charged to the pool named by their project")
    pool = ledger.row[request.pool]
    if ledger.public[pool]:
        return Deny(request, f"pool {request.pool} is public: it lends to every project and takes no work of its own")
    min_loan = ledger.config.reclaim.min_loan_s if min_loan_s is None else min_loan_s
    candidates = _gpu_models(ledger, request)
    vectors = [ledger.vector(with_model(request.charge, m)) for m in candidates]

    nevers = [_never(ledger, pool, vec) for vec in vectors]
    if all(nevers):  # a model that can never fit is skipped; deny only when none can
        return Deny(request, f"{_who(ledger, pool)}: {nevers[0]}")
    candidates = [m for m, never in zip(candidates, nevers) if not never]
    vectors = [v for v, never in zip(vectors, nevers) if not never]
    fitting = [(model, vec) for model, vec in zip(candidates, vectors) if ledger.fits(pool, vec)]
    if fitting:  # a model that needs no borrowing first, else the first that fits by borrowing
        model, vec = next(((m, v) for m, v in fitting if not _borrows(ledger, pool, v).any()), fitting[0])
        return _admit(ledger, request, model, pool, vec)
    for model, vec in zip(candidates, vectors):
        victims = plan_reclaim(ledger, pool, vec, now, min_loan, usable)
        if victims:
            names = ", ".join(f"{v.key} ({v.pool})" for v in victims)
            return Reclaim(request, model, victims, f"{_who(ledger, pool)}: reclaims lent capacity from {names}")
    return Wait(request, _why_waiting(ledger, pool, vectors[0]))


def _gpu_models(ledger: Ledger, request: Request) -> list[str | None]:
    if not request.charge[GPU]:
        return [None]
    governed = [r.removeprefix(GPU + "/") for r in ledger.resources if is_gpu_quota(r) and r != GPU]
    allowed = [m for m in governed if accepts_model(request.gpu_models, m)]
    return list(allowed) or [None]


def _who(ledger: Ledger, pool: int) -> str:
    return f"project {ledger.names[pool]}"


def _never(ledger: Ledger, pool: int, vec: np.ndarray) -> str:
    """Why ``vec`` could never fit, whatever else ran: above a max or guarantee plus borrow limit."""
    used = vec > 0
    for a in ledger.paths[pool]:
        for bound, what in ((ledger.max[a], "the max"),
                            (ledger.guaranteed[a] + ledger.borrow_limit[a], "the guarantee plus borrow limit")):
            bad = used & (vec > bound)
            if bad.any():
                col = int(np.argmax(bad))
                return (f"needs {ledger.label(col, vec[col])}, more than {what} of pool {ledger.names[a]} "
                        f"({ledger.label(col, bound[col])})")
    return ""


def _borrows(ledger: Ledger, pool: int, vec: np.ndarray) -> np.ndarray:
    """What of ``vec`` would go above the pool's own guarantee."""
    own_free = np.maximum(ledger.guaranteed[pool] - ledger.usage[pool], 0)
    return np.maximum(vec - own_free, 0)


def _admit(ledger: Ledger, request: Request, model: str | None, pool: int, vec: np.ndarray) -> Admit:
    borrowed = _borrows(ledger, pool, vec)
    lenders = _lenders(ledger, pool, borrowed)
    if not borrowed.any():
        return Admit(request, model, Resources(), (), f"{_who(ledger, pool)}: within its guarantee")
    names = ", ".join(name for name, _ in lenders) or "unassigned cluster capacity"
    borrowed_text = ", ".join(ledger.label(j, borrowed[j]) for j in np.flatnonzero(borrowed))
    return Admit(request, model, ledger.amounts(borrowed), lenders,
                 f"{_who(ledger, pool)}: borrows {borrowed_text} from {names}")


def _lenders(ledger: Ledger, pool: int, borrowed: np.ndarray) -> tuple[tuple[str, Resources], ...]:
    """Who lends ``borrowed``: at each level up the tree, the lenders of :func:`lenders_at`. What
    the level's children already borrow is counted against the same lenders first, so loans are
    credited in the order they were made."""
    left = borrowed.copy()
    out: list[tuple[str, Resources]] = []
    path = ledger.paths[pool]
    for child, parent in zip(path, path[1:]):
        if not left.any():
            break
        taken = sum((ledger.borrowing(c) for c in ledger.children[parent]), np.zeros_like(left))
        for name, idle in lenders_at(ledger, parent, child):
            skipped = np.minimum(taken, idle)
            taken -= skipped
            lent = np.minimum(left, idle - skipped)
            if lent.any():
                out.append((name, ledger.amounts(lent)))
                left -= lent
    return tuple(out)


def plan_reclaim(
    ledger: Ledger, pool: int, vec: np.ndarray, now: float, min_loan_s: float, usable: Usable | None = None
) -> tuple[Workload, ...]:
    """The victims whose eviction lets ``vec`` into ``pool``, or () if none will do.

    Only a request within a guarantee reclaims: within its own pool's, or an ancestor's (then it
    reclaims what that ancestor lent outside its subtree). Victims are borrowers only (a workload
    whose pool, or an ancestor short of the common one, is above its guarantee in a resource the
    request needs), whole workloads, chosen loans past ``min_loan_s`` first, then lowest priority,
    then newest; then every victim whose eviction turns out unnecessary is spared, so the set is
    the fewest and cheapest that actually frees usable capacity. Speculative: the ledger is left
    as it was.
    """
    violation = ledger.violation(pool, vec)
    if violation is None or violation.limit != "capacity":
        return ()
    entitled = ledger.entitled(pool, vec)
    if entitled is None:
        return ()
    deficit = ledger.shortfall(pool, vec)
    short = deficit > 0  # only borrowing of these resources is worth reclaiming
    shared = set(ledger.paths[entitled])

    def borrowing_on_path(q: int) -> bool:
        """Whether a pool on ``q``'s path, below where it meets the entitled pool, is above its
        guarantee in a resource the cluster is short of: its workloads are borrowers."""
        for a in ledger.paths[q]:
            if a in shared:
                return False
            if (short & (ledger.usage[a] > ledger.guaranteed[a])).any():
                return True
        return False

    pools = [q for q in range(1, len(ledger.names))
             if ledger.by_pool[q] and not ledger.in_subtree(q, entitled) and borrowing_on_path(q)]
    if (sum((ledger.own[q] for q in pools), np.zeros_like(vec)) < deficit).any():
        return ()  # evicting every borrower would not free enough

    def loans() -> Iterator[Workload]:
        return heapq.merge(*(ledger.reclaim_order(q) for q in pools), key=lambda w: (w.priority, -w.admitted_at, w.key))

    def still_borrowing(w: Workload) -> bool:
        return (w.key not in ledger.terminating and (short & (ledger.workloads[w.key][2] > 0)).any()
                and borrowing_on_path(ledger.row[w.pool]))

    victims: list[Workload] = []
    young = lambda w: now - w.admitted_at < min_loan_s  # noqa: E731
    candidates = chain((w for w in loans() if not young(w)), (w for w in loans() if young(w)))
    freed = np.zeros_like(vec)  # at most what the victims so far free (a reserve may keep some)
    try:
        for w in candidates:
            if not still_borrowing(w):
                continue
            freed += ledger.workloads[w.key][2]
            ledger.remove(w.key)
            victims.append(w)
            if (freed >= deficit).all() and ledger.fits(pool, vec) and (usable is None or usable(victims)):
                break
        else:
            return ()
        for w in reversed(victims[:-1]):  # spare whoever need not go
            ledger.add(w, force=True)
            rest = [v for v in victims if v.key != w.key]
            if ledger.fits(pool, vec) and (usable is None or usable(rest)):
                victims = rest
            else:
                ledger.remove(w.key)
        return tuple(victims)
    finally:
        for w in victims:
            if w.key not in ledger.workloads:
                ledger.add(w, force=True)


def _why_waiting(ledger: Ledger, pool: int, vec: np.ndarray) -> str:
    """``project nlp: needs 8 GPU (A100), has 4 of 12 guaranteed free, 2 borrowable from vision,
    cap 16; pool ai is at its max of 40 GPU``."""
    v = ledger.violation(pool, vec)
    assert v is not None
    col = v.column
    guaranteed = int(ledger.guaranteed[pool, col])
    own_free = max(0, guaranteed - int(ledger.usage[pool, col]))
    borrowable = max(0, ledger.room(pool, col) - own_free)
    parts = [f"needs {ledger.label(col, vec[col])}",
             f"has {ledger.amount(col, own_free)} of {ledger.amount(col, guaranteed)} guaranteed free"]
    if borrowable:
        unit = np.zeros_like(vec)
        unit[col] = borrowable
        lenders = ", ".join(name for name, _ in _lenders(ledger, pool, unit)) or "the cluster"
        parts.append(f"{ledger.amount(col, borrowable)} borrowable from {lenders}")
    else:
        parts.append("nothing borrowable")
    if ledger.max[pool, col] < UNLIMITED:
        parts.append(f"cap {ledger.amount(col, ledger.max[pool, col])}")
    return f"{_who(ledger, pool)}: {', '.join(parts)}; {ledger.describe(v)}"

"""Whether a pod or a whole gang overflows, to which target and instance types, and why not.

Pure: the caller says how long the work has waited, when (if ever) the cluster or a reclaim
could serve it, how much burst budget its project has left, and which claims are bound to local
volumes. A gang goes whole to one target or stays whole: never split across the two worlds.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from burst.targets import ECI, MAX_SPECS, BurstConfig, InstanceType, Target
from scheduler.model.cluster import Pod
from scheduler.model.gpu_models import accepts_model
from scheduler.model.resources import CPU, MEMORY


@dataclass(frozen=True, slots=True)
class Offer:
    """How one pod runs on the target: for ECI the instance types in priority order and whether
    spot is asked; ``hourly`` is the most it can cost per hour (what the budget reserves)."""

    pod: Pod
    target: Target
    specs: tuple[InstanceType, ...]
    spot: bool
    hourly: float


@dataclass(frozen=True, slots=True)
class Overflow:
    key: str
    pool: str
    offers: tuple[Offer, ...]
    reserved: float  # hourly cost x max runtime
    reason: str


@dataclass(frozen=True, slots=True)
class Stay:
    key: str
    reason: str


BurstDecision = Overflow | Stay


def blockers(pod: Pod, config: BurstConfig, local_claims: Collection[str] = ()) -> list[str]:
    """Why ``pod`` cannot run on a virtual node (empty if it can)."""
    out = list(pod.host_ties)
    out += [f"local volume claim {c}" for c in pod.claims if c in local_claims]
    if pod.kind not in config.kinds:
        out.append(f"{pod.kind} work may not overflow (allowed: {', '.join(sorted(config.kinds))})")
    if pod.gpu is not None and pod.gpu.shared:
        out.append("a GPU share: virtual nodes rent whole GPUs")
    return out


def _specs(pod: Pod, target: Target) -> tuple[InstanceType, ...]:
    """The instance types that fit ``pod``, cheapest first; GPU pods only on GPU types (ECI
    wants every type of a GPU pod's list to be a GPU type) and CPU pods only on the others."""
    gpus = pod.gpu.count if pod.gpu is not None else 0
    models = pod.gpu.models if pod.gpu is not None else None
    fitting = [t for t in target.instance_types
               if t.cpu_milli >= pod.requests[CPU] and t.memory >= pod.requests[MEMORY]
               and (t.gpus >= gpus > 0 and accepts_model(models, t.gpu_model) or gpus == t.gpus == 0)]
    use_spot = target.spot and any(t.spot_price for t in fitting)
    if use_spot and not target.spot_fallback:
        fitting = [t for t in fitting if t.spot_price]
    return tuple(sorted(fitting, key=lambda t: ((t.spot_price or t.price) if use_spot else t.price, t.name))[:MAX_SPECS])


def _offer(pod: Pod, target: Target, length: int) -> Offer | None:
    """``pod`` on ``target``, with at most ``length`` instance types (ECI)."""
    if target.kind == ECI:
        specs = _specs(pod, target)[:length]
        if not specs:
            return None
        spot = target.spot and any(t.spot_price for t in specs)
        # Spot may fall back to pay-as-you-go, and ECI may take any type of the list: reserve the dearest.
        hourly = max(t.price if not spot or target.spot_fallback or not t.spot_price else t.spot_price for t in specs)
        return Offer(pod, target, specs, spot, hourly)
    gpus = pod.gpu.count if pod.gpu is not None else 0
    if gpus and not target.gpus:
        return None
    return Offer(pod, target, (), False, pod.requests[CPU] / 1000 * target.cpu_hour_price + gpus * target.gpu_hour_price)


def _first_choice(offer: Offer) -> float:
    """What the offer costs per hour if its first instance type is available."""
    if not offer.specs:
        return offer.hourly
    first = offer.specs[0]
    return first.spot_price if offer.spot and first.spot_price else first.price


def decide_burst(
    config: BurstConfig,
    key: str,
    pods: Sequence[Pod],
    waited_s: float,
    local_eta_s: float | None,
    budget_left: float | None,
    local_claims: Collection[str] = (),
    pods_on_target: Mapping[str, int] | None = None,
) -> BurstDecision:
    """``local_eta_s``: when the cluster (placement or a reclaim) could start the work, None if
    not foreseeable; ``budget_left``: the project's burst budget left now (None: no budget set);
    ``pods_on_target``: burst pods each virtual-kubelet pool runs now."""
    threshold = config.threshold_s
    if waited_s < threshold:
        return Stay(key, f"waited {waited_s / 60:.0f} of {threshold / 60:.0f} min before overflow")
    if local_eta_s is not None and local_eta_s <= threshold:
        return Stay(key, f"the cluster can start it within {local_eta_s / 60:.0f} min")
    blocked = [f"{p.name}: {b}" for p in pods for b in blockers(p, config, local_claims)]
    if blocked:
        return Stay(key, "cannot run on a virtual node: " + "; ".join(blocked))
    if budget_left is None:
        return Stay(key, f"project {pods[0].project} has no burst budget")
    running = pods_on_target or {}
    hours = config.max_runtime_s / 3600
    choices = []  # (first-choice cost, fewer types last, target): the cheapest target, the longest list
    for target in config.targets:
        if target.max_pods is not None and running.get(target.name, 0) + len(pods) > target.max_pods:
            continue
        for length in range(MAX_SPECS if target.kind == ECI else 1, 0, -1):
            offers = [_offer(p, target, length) for p in pods]
            if any(o is None for o in offers):
                break
            reserved = sum(o.hourly for o in offers) * hours  # type: ignore[union-attr]
            choices.append((sum(_first_choice(o) for o in offers), -length, reserved, target.name, tuple(offers)))  # type: ignore[arg-type]
    if not choices:
        return Stay(key, "no burst target can run " + ("the whole gang" if len(pods) > 1 else "it"))
    affordable = [c for c in choices if c[2] <= budget_left]
    if not affordable:
        cheapest = min(choices, key=lambda c: c[2])
        return Stay(key, f"project {pods[0].project}: the cheapest overflow ({cheapest[3]} for up to {hours:g} h) "
                         f"needs {cheapest[2]:.2f}, {budget_left:.2f} of budget left")
    _, _, reserved, name, offers = min(affordable)
    specs = ", ".join(s.name for s in offers[0].specs) or "virtual node"
    spot = " spot" if offers[0].spot else ""
    return Overflow(key, pods[0].project, offers, reserved,
                    f"waited {waited_s / 60:.0f} min (threshold {threshold / 60:.0f}); no local capacity in time; "
                    f"{name}{spot}: {specs}; reserves {reserved:.2f} of {budget_left:.2f} left")


def after_stock_out(offer: Offer, failed: str) -> Offer | None:
    """ECI answered NoStock (or ProviderFailed) for instance type ``failed``: the offer without it,
    or None when nothing is left and the work goes back to waiting."""
    rest = tuple(s for s in offer.specs if s.name != failed)
    if not rest:
        return None
    return Offer(offer.pod, offer.target, rest, offer.spot, offer.hourly)

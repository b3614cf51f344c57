"""Overflow in a simulation: burst targets with start-up delay, prices and stock-outs, and the
budgets that bound them. The decision is the live one (:func:`burst.decide.decide_burst`);
this module only plays what the target answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from burst.budget import SpendLedger
from burst.decide import Offer, Overflow, after_stock_out, blockers, decide_burst
from burst.targets import BurstConfig
from quota.config import Budget
from scheduler.model.cluster import Pod


@dataclass(frozen=True, slots=True)
class Started:
    """A unit sent to ``target`` at ``created``: each member runs from ``start`` (after the
    target's start-up) to its ``end``, billed ``hourly`` from ``created``."""

    target: str
    created: float
    start: float
    end: tuple[float, ...]
    hourly: tuple[float, ...]


def _price(offer: Offer) -> float:
    """What the first instance type in stock costs per hour (spot when asked and offered)."""
    if not offer.specs:
        return offer.hourly
    first = offer.specs[0]
    return first.spot_price if offer.spot and first.spot_price else first.price


class SimulatedBurst:
    def __init__(self, config: BurstConfig, budgets: Mapping[str, Budget] | None, rng: np.random.Generator):
        """``budgets``: per pool, from the quota configuration; None when the run has no quota,
        and then bursts are bounded by nothing but the configuration (the report shows the cost)."""
        self.config = config
        self.ledger = SpendLedger(budgets or {})
        self.unbounded = budgets is None
        self.rng = rng
        self.on_target: dict[str, int] = {}

    def eligible(self, pods: Sequence[Pod]) -> bool:
        return not any(blockers(p, self.config) for p in pods)

    def try_start(self, key: str, pods: Sequence[Pod], durations: Sequence[float | None], waited: float,
                  now: float) -> Started | str:
        """Start ``pods`` (a whole unit) on a target, or say why not."""
        left = float("inf") if self.unbounded else self.ledger.left(pods[0].project, now)
        decision = decide_burst(self.config, key, pods, waited, None, left, pods_on_target=self.on_target)
        if not isinstance(decision, Overflow):
            return decision.reason
        offers = []
        for offer in decision.offers:  # the provider may be out of some types: try the list in order
            left_offer: Offer | None = offer
            while left_offer is not None and left_offer.specs and self.rng.random() < offer.target.stock_out:
                left_offer = after_stock_out(left_offer, left_offer.specs[0].name)
            if left_offer is None:
                return f"{offer.target.name}: out of stock for every instance type asked"
            offers.append(left_offer)
        target = offers[0].target
        start = now + target.startup_s
        limit = now + self.config.max_runtime_s
        ends = tuple(min(start + d, limit) if d is not None else limit for d in durations)
        self.ledger.reserve(pods[0].project, key, decision.reserved, now)
        self.on_target[target.name] = self.on_target.get(target.name, 0) + len(pods)
        return Started(target.name, now, start, ends, tuple(_price(o) for o in offers))

    def finish(self, key: str, started: Started) -> list[float]:
        """The unit left its target: each member's cost (instance time from creation), settled."""
        costs = [h * (end - started.created) / 3600 for h, end in zip(started.hourly, started.end)]
        self.ledger.settle(key, sum(costs))
        self.on_target[started.target] -= len(started.end)
        return costs

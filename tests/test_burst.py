"""Overflow: configuration, eligibility, whole gangs, target and instance choice, the JSON Patch,
stock-outs, and budgets that are never exceeded."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from burst.decide import Overflow, Stay, after_stock_out, blockers, decide_burst
from burst.metrics import BudgetGauge
from burst.patch import burst_patch
from burst.targets import BurstConfigError, burst_from_yaml
from prometheus_client import CollectorRegistry, generate_latest
from quota.config import Budget, Pool
from quota.store import Store, StoreError
from quota.store.engine import stored_utc
from quota.store.schema import SpendRow
from slotwise.cli import app
from scheduler.model.k8s_json import pod_from_k8s

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "burst.yaml"
CONFIG = burst_from_yaml(EXAMPLE.read_text())
HOUR = 3600.0


def pod_json(name: str = "train-0", *, gpus: int = 1, cpu: str = "8", memory: str = "24Gi", **spec: Any) -> dict[str, Any]:
    requests = {"cpu": cpu, "memory": memory} | ({"nvidia.com/gpu": str(gpus)} if gpus else {})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "nlp", "labels": {"slotwise.io/project": "nlp"}},
            "spec": {"containers": [{"name": "main", "image": "x", "resources": {"requests": requests}}], **spec}}


def decide(objs: list[dict[str, Any]], waited: float = HOUR, budget: float | None = 1000.0, **kw: Any):
    pods = [pod_from_k8s(o) for o in objs]
    return decide_burst(CONFIG, pods[0].key, pods, waited, None, budget, **kw)


@pytest.mark.parametrize("text, problem", [
    ("targets: [{name: a, type: eci, provider: x}]", "target a: an ECI target needs instance_types"),
    ("targets: [{name: a, type: gpu-cloud, provider: x}]", "targets.0.type"),
    ("targets: [{name: a, type: eci, provider: x, instance_types: [{name: t, cpu: 4, memory: 8Gi, gpu: 1, price: 1}]}]",
     "instance type t: gpu_model is required with gpu"),
    ("targets: [{name: a, type: eci, provider: x, instance_types: [{name: t, cpu: 4, memory: 8Gi, price: 1, spot_price: 2}]}]",
     "spot_price (2) is above price (1)"),
    ("targets: [{name: a, type: eci, provider: x, spot: true, instance_types: [{name: t, cpu: 4, memory: 8Gi, price: 1}]}]",
     "spot is on but no instance type has a spot_price"),
    ("targets: [{name: a, type: virtual-kubelet, provider: x, instance_types: [{name: t, cpu: 4, memory: 8Gi, price: 1}]}]",
     "instance_types are for ECI targets"),
    ("targets: [{name: a, type: eci, provider: x, instance_types: [{name: t, cpu: lots, memory: 8Gi, price: 1}]}]",
     "instance type t: cpu"),
    ("threshold: soon", "threshold: expected a duration"),
    ("max_runtime: 0s", "max_runtime: must be above zero"),
    ("kinds: [batch]", "kinds.0"),
    ("targets: [{name: a, type: virtual-kubelet, provider: x}, {name: a, type: virtual-kubelet, provider: y}]",
     "target a: the name is used twice"),
])
def test_invalid_configurations_are_refused_naming_the_field(text, problem):
    with pytest.raises(BurstConfigError) as caught:
        burst_from_yaml(text)
    assert any(problem in p for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize("spec, owners, kind_label, blocker", [
    ({"volumes": [{"name": "logs", "hostPath": {"path": "/var/log"}}]}, [], None, "hostPath volume logs"),
    ({"hostNetwork": True}, [], None, "hostNetwork"),
    ({"containers": [{"name": "agent", "image": "x", "securityContext": {"privileged": True}}]}, [], None,
     "privileged container agent"),
    ({}, [{"kind": "DaemonSet", "name": "ds", "uid": "u", "apiVersion": "apps/v1"}], None, "owned by a DaemonSet"),
    ({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "scratch"}}]}, [], None,
     "local volume claim scratch"),
    ({}, [], "notebook", "notebook work may not overflow"),
])
def test_ineligible_pods_stay_and_are_never_mutated(spec, owners, kind_label, blocker):
    obj = pod_json()
    obj["spec"].update(spec)
    obj["metadata"]["ownerReferences"] = owners
    if kind_label:
        obj["metadata"]["labels"]["slotwise.io/workload-kind"] = kind_label
    decision = decide([obj], local_claims={"scratch"})
    assert isinstance(decision, Stay) and blocker in decision.reason
    assert blocker in blockers(pod_from_k8s(obj), CONFIG, {"scratch"})[0]


def test_a_gpu_share_stays_home():
    obj = pod_json(gpus=0)
    obj["spec"]["containers"][0]["resources"]["requests"]["slotwise.io/gpu-milli"] = "500"
    assert "GPU share" in decide([obj]).reason


@pytest.mark.parametrize("waited, eta, budget, reason", [
    (10 * 60, None, 1000.0, "waited 10 of 30 min"),
    (HOUR, 20 * 60, 1000.0, "the cluster can start it within 20 min"),
    (HOUR, None, None, "project nlp has no burst budget"),
    (HOUR, None, 5.0, "needs 15.60, 5.00 of budget left"),
])
def test_when_work_stays(waited, eta, budget, reason):
    pods = [pod_from_k8s(pod_json())]
    decision = decide_burst(CONFIG, "nlp/train-0", pods, waited, eta, budget)
    assert isinstance(decision, Stay) and reason in decision.reason


def test_cpu_work_goes_to_the_cheapest_target_and_gpu_work_to_eci():
    cpu = decide([pod_json(gpus=0, cpu="4", memory="12Gi")])
    assert isinstance(cpu, Overflow) and cpu.offers[0].target.name == "kubeminer"
    assert cpu.reserved == pytest.approx(4 * 0.01 * 8)
    gpu = decide([pod_json()])
    assert isinstance(gpu, Overflow) and gpu.offers[0].target.name == "eci-hangzhou"
    names = [s.name for s in gpu.offers[0].specs]
    assert names[0] == "ecs.gn7i-c8g1.2xlarge"  # the cheapest that fits 8 cpu, 24Gi, 1 GPU (the T4 type has 4 cpu)
    assert "ecs.gn6i-c4g1.xlarge" not in names and len(names) <= 5


def test_the_spec_list_shrinks_to_what_the_budget_covers():
    rich, tight = decide([pod_json()], budget=1000.0), decide([pod_json()], budget=21.0)
    assert isinstance(rich, Overflow) and isinstance(tight, Overflow)
    assert len(tight.offers[0].specs) < len(rich.offers[0].specs)
    assert tight.reserved <= 21.0 and tight.offers[0].specs[0] == rich.offers[0].specs[0]


def test_gpu_model_restrictions_pick_matching_types():
    obj = pod_json(gpus=2, cpu="16", memory="64Gi")
    obj["metadata"]["annotations"] = {"slotwise.io/gpu-models": "A100-SXM4-40GB"}
    decision = decide([obj])
    assert isinstance(decision, Overflow)
    # Only the A100 types; with spot on, the 8-GPU type's spot price (11.00) beats the 4-GPU type's 16.60.
    assert [s.name for s in decision.offers[0].specs] == ["ecs.gn7-c13g1.26xlarge", "ecs.gn7-c13g1.13xlarge"]


def test_a_gang_goes_whole_to_one_target_or_stays_whole():
    members = [pod_json(f"w{k}", gpus=0, cpu="4", memory="8Gi") for k in range(4)]
    whole = decide(members)
    assert isinstance(whole, Overflow) and len(whole.offers) == 4
    assert len({o.target.name for o in whole.offers}) == 1
    members[2]["spec"]["hostNetwork"] = True
    assert isinstance(decide(members), Stay)
    # kubeminer has room for two more pods, and the ECI catalog has no CPU types: none go, not two.
    full = decide([pod_json(f"w{k}", gpus=0) for k in range(4)], pods_on_target={"kubeminer": 198})
    assert isinstance(full, Stay) and full.reason == "no burst target can run the whole gang"


def test_patch_steers_the_pod_to_the_virtual_node():
    obj = pod_json(tolerations=[{"key": "gpu", "operator": "Exists"}])
    decision = decide([obj])
    assert isinstance(decision, Overflow)
    patched = jsonpatch.apply_patch(obj, burst_patch(obj, decision.offers[0], CONFIG.max_runtime_s))
    spec, meta = patched["spec"], patched["metadata"]
    assert spec["nodeSelector"] == {"type": "virtual-kubelet"}
    assert spec["tolerations"][-1] == {"key": "virtual-kubelet.io/provider", "operator": "Equal",
                                       "value": "alibabacloud", "effect": "NoSchedule"}
    assert spec["tolerations"][0] == {"key": "gpu", "operator": "Exists"}
    assert spec["activeDeadlineSeconds"] == 8 * 3600
    assert meta["labels"]["slotwise.io/burst-target"] == "eci-hangzhou"
    ann = meta["annotations"]
    assert ann["k8s.aliyun.com/eci-use-specs"].split(",") == [s.name for s in decision.offers[0].specs]
    assert ann["k8s.aliyun.com/eci-spot-strategy"] == "SpotWithPriceLimit"
    assert float(ann["k8s.aliyun.com/eci-spot-price-limit"]) == max(s.spot_price or s.price for s in decision.offers[0].specs)
    assert ann["k8s.aliyun.com/eci-spot-fallback"] == "true"
    assert ann["k8s.aliyun.com/eci-fail-strategy"] == "fail-back"
    assert patched["spec"]["containers"] == obj["spec"]["containers"]


def test_an_earlier_deadline_is_kept():
    obj = pod_json(activeDeadlineSeconds=600)
    decision = decide([obj])
    assert {"op": "add", "path": "/spec/activeDeadlineSeconds", "value": 600} in burst_patch(obj, decision.offers[0], 8 * HOUR)


def test_stock_outs_fall_back_to_the_next_type_then_to_waiting():
    offer = decide([pod_json()]).offers[0]
    rest = after_stock_out(offer, offer.specs[0].name)
    assert rest is not None and rest.specs == offer.specs[1:]
    for spec in offer.specs[1:]:
        rest = after_stock_out(rest, spec.name) if rest else None
    assert rest is None


# Budgets ---------------------------------------------------------------------------------------
_ids = itertools.count()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(f"sqlite:///{tmp_path_factory.mktemp('burst') / 'burst.db'}")
    s.migrate()
    yield s
    s.close()


def recorded(store: Store, pool: str) -> list[tuple[datetime, float]]:
    """The pool's bursts as the store keeps them: when each started (UTC) and what it counts
    against the budget (its cost once settled, else what it reserved)."""
    with Session(store.engine) as s:
        return [(stored_utc(r.started_at), r.reserved if r.spent is None else r.spent)
                for r in s.scalars(select(SpendRow).where(SpendRow.pool == pool))]


def left_by_records(records: list[tuple[datetime, float]], budget: Budget, at: datetime) -> float:
    """What the store's own records leave on the UTC day and calendar month of ``at``."""
    lefts = [limit - sum(v for t, v in records if window(t) == window(at))
             for limit, window in ((budget.per_day, lambda t: t.date()), (budget.per_month, lambda t: (t.year, t.month)))
             if limit is not None]
    return max(min(lefts), 0.0)


#: Seconds into a UTC day: midnight, just after it, noon and the day's last second.
TIMES_OF_DAY = (0, 1, 43_200, 86_399)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(per_day=st.none() | st.floats(1, 100), per_month=st.floats(1, 300),
       requests=st.lists(st.tuples(st.integers(0, 45), st.sampled_from(TIMES_OF_DAY), st.floats(0.5, 60), st.floats(0, 1)),
                         min_size=1, max_size=12))
# A monthly limit of 100: 60 on 20 and 60 on 21 December would pass it if the month were counted from today.
@example(per_day=None, per_month=100.0, requests=[(0, 43_200, 60.0, 1.0), (1, 43_200, 60.0, 1.0)])
# The 31st of December and the 1st of January; the 1st of January and the 31st.
@example(per_day=80.0, per_month=100.0, requests=[(11, 86_399, 70.0, 1.0), (12, 0, 70.0, 1.0), (42, 86_399, 50.0, 1.0)])
def test_budgets_are_never_exceeded(store, per_day, per_month, requests):
    """Bursts reserve through the store (as the admission loop does) and settle at most what
    they reserved. Before each, what the store says is left equals its budget less what its own
    records hold for that UTC day and month; whatever the sequence, the records stay within budget."""
    pool = f"team{next(_ids)}"
    budget = Budget(per_day, per_month)
    store.set_pool(Pool(pool, budget=budget), "test")
    start = datetime(2026, 12, 20, tzinfo=UTC)  # to 3 February: a month of 31 days, the year's end, January
    for k, (day, second, reserve, used) in enumerate(requests):
        at = start + timedelta(days=day, seconds=second)
        left = store.budget_left(pool, at)
        assert left is not None
        assert left[0] == pytest.approx(left_by_records(recorded(store, pool), budget, at), abs=1e-6)
        try:
            store.reserve_spend(pool, f"{pool}/w{k}", "eci", reserve, at, "test")
        except StoreError:
            assert reserve > left[0]
            continue
        assert reserve <= left[0] + 1e-9
        store.settle_spend(f"{pool}/w{k}", reserve * used * 2, "test")  # asks for up to twice: capped
    records = recorded(store, pool)
    for at, _ in records:
        day = sum(v for t, v in records if t.date() == at.date())
        month = sum(v for t, v in records if (t.year, t.month) == (at.year, at.month))
        assert month <= per_month + 1e-6 and (per_day is None or day <= per_day + 1e-6)


def test_budget_gauge_reports_the_share_used():
    registry = CollectorRegistry()
    BudgetGauge(registry).update("nlp", left=10.0, limit=40.0)
    assert 'slotwise_burst_budget_used_ratio{pool="nlp"} 0.75' in generate_latest(registry).decode()


def test_cli_checks_and_plans(tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, ["burst", "check", str(EXAMPLE)]).exit_code == 0
    pod = tmp_path / "pod.json"
    pod.write_text(json.dumps(pod_json()))
    result = runner.invoke(app, ["burst", "plan", str(EXAMPLE), "--pod", str(pod), "--waited", "45m"])
    assert result.exit_code == 0 and "overflow:" in result.output and "eci-use-specs" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets: [{name: a, type: eci, provider: x}]")
    result = runner.invoke(app, ["burst", "check", str(bad)])
    assert result.exit_code == 2 and "needs instance_types" in result.output
    result = runner.invoke(app, ["burst", "plan", str(EXAMPLE), "--pod", str(pod), "--budget", "-5"])
    assert result.exit_code == 2 and "Invalid value for '--budget'" in result.output

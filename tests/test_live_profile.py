"""A placement profile over the workload a live cluster holds: fgd, which needs the pod shapes
the cluster expects, decides in the admission loop and the extender from the pods the cache
holds, and the profile is rebuilt only when those shapes change, at most every refresh period."""

from __future__ import annotations

import jsonpatch
import orjson
import pytest

from scheduler.model.k8s_json import pod_from_k8s
from slotwise.server.admission_loop import AdmissionLoop, Ungate
from slotwise.server.extender import Extender
from slotwise.server.live_profile import LiveProfile
from tests.conftest import Clock
from tests.test_server_admission_loop import T0, cache_of, gated, node_names, pod_json, store  # noqa: F401


def test_the_profile_follows_the_shapes_the_cache_holds_at_most_every_period():
    cache = cache_of(pod_json("a"), pod_json("b"))
    clock = Clock()
    live = LiveProfile(cache, "fgd", every_s=10, clock=clock)
    first = live.current()
    assert live.current() is first
    cache.replace("pods", [pod_json(name) for name in "abc"])  # one more of the same shape: counts changed
    clock.now += 9
    assert live.current() is first  # not yet looked at again
    clock.now += 1
    second = live.current()
    assert second is not first
    clock.now += 10
    assert live.current() is second  # nothing changed: kept, and what callers built from it too


def test_the_profile_is_rebuilt_sooner_while_the_pods_held_more_than_double():
    """The first pods are a small sample of what the cluster will hold: a cluster filling at
    60 pods/s would otherwise place its first 600 against the first few."""
    cache = cache_of(pod_json("a"), pod_json("b"))
    clock = Clock()
    live = LiveProfile(cache, "fgd", every_s=10, clock=clock)
    first = live.current()
    cache.replace("pods", [pod_json(name) for name in "abcd"])  # twice as many: not more than twice
    assert live.current() is first
    cache.replace("pods", [pod_json(name) for name in "abcde"])
    assert live.current() is not first  # no time passed


def test_default_packs_gpu_pods_until_the_cache_holds_pods_then_measures_fragmentation_against_them():
    cache = cache_of()
    clock = Clock()
    live = LiveProfile(cache, "default", every_s=10, clock=clock)
    assert live.current().gpu[0][0].name == "gpu-pack"  # nothing to measure against yet
    cache.replace("pods", [pod_json("a", gpus=4)])
    clock.now += 10
    assert live.current().gpu[0][0].name == "fgd-cpu"


def test_a_profile_no_workload_changes_is_built_once():
    cache = cache_of(pod_json("a"))
    clock = Clock()
    live = LiveProfile(cache, "gpu-pack", every_s=10, clock=clock)
    first = live.current()
    cache.replace("pods", [pod_json("a", gpus=4), pod_json("b"), pod_json("c")])
    clock.now += 100
    assert live.current() is first


def test_an_empty_cache_measures_against_the_pods_being_decided():
    profile = LiveProfile(cache_of(), "fgd").current([pod_from_k8s(pod_json("a"))])
    assert profile.name == "fgd"
    with pytest.raises(ValueError, match="fgd needs a target workload"):
        LiveProfile(cache_of(), "fgd").current([])  # nothing to decide, nothing to measure against


def test_the_admission_loop_and_the_extender_decide_with_fgd(store):  # noqa: F811
    obj = pod_json("a", gpus=2)
    cache = cache_of(obj, gpus=(8, 4))
    admission = AdmissionLoop(cache, None, store, "fgd", clock=lambda: T0)  # type: ignore[arg-type]  # plan needs no API
    with cache.snapshot() as snap:
        [action] = admission.plan(snap.copy(), gated(obj), T0)
    assert isinstance(action, Ungate)
    assert node_names(jsonpatch.apply_patch(obj, action.patch)) in ([["n0"]], [["n1"]])
    scored = orjson.loads(Extender(cache, "fgd").prioritize(orjson.dumps({"Pod": obj, "NodeNames": ["n0", "n1"]})))
    assert {s["Host"] for s in scored} == {"n0", "n1"}


def test_serve_refuses_an_unknown_profile_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from slotwise.cli import app

    result = CliRunner().invoke(app, ["serve", "--db", f"sqlite:///{tmp_path / 'q.db'}", "--profile", "nope"])
    assert result.exit_code == 2
    assert result.output.startswith("error: unknown profile 'nope'; choose one of default, ")
    assert not (tmp_path / "q.db").exists()

"""The MIG what-if: one job stream under whole GPUs, static, dynamic and per-slot partitioning."""

from __future__ import annotations

import pytest

from mig.catalog import MODELS
from mig.simulate import MODES, SEED_MIX, MigJob, generate_jobs, random_mix, simulate, static_layouts

A100 = MODELS["A100-80GB"]


def run(mode, jobs, mix=SEED_MIX, **kw):
    return simulate(mode, jobs, A100, nodes=1, gpus_per_node=4, mix=mix, **kw)


def test_runs_are_reproducible_and_mig_serves_more_than_whole_gpus():
    jobs = generate_jobs(300, SEED_MIX, A100, 4, load=1.0, seed=5)
    assert generate_jobs(300, SEED_MIX, A100, 4, load=1.0, seed=5) == jobs
    outcomes = {m: run(m, jobs) for m in MODES}
    assert run("dynamic", jobs) == outcomes["dynamic"]
    assert outcomes["whole"].served < outcomes["static"].served <= outcomes["slots"].served
    assert outcomes["whole"].utilisation < outcomes["static"].utilisation
    assert outcomes["static"].repartitions == 0 and outcomes["whole"].repartitions == 0
    for o in outcomes.values():
        assert 0 < o.utilisation <= 1 and o.served <= o.jobs == 300


def test_static_partition_follows_the_mix():
    layouts = static_layouts(A100, 4, {"3g": 1.0})
    assert [str(x) for x in layouts] == ["3g.40gb@0 3g.40gb@4"] * 4


def test_dynamic_repartitions_free_gpus_for_what_waits():
    # The static partition is all 3g; then only 2g jobs come: static never serves them.
    jobs = [MigJob(f"j{i}", 10.0 * i, 3600.0, "2g") for i in range(6)]
    static = run("static", jobs, mix={"3g": 1.0}, horizon=7200.0)
    dynamic = run("dynamic", jobs, mix={"3g": 1.0}, horizon=7200.0, reconfigure_s=60.0)
    assert static.served == 0
    assert dynamic.served == 6 and dynamic.repartitions == 2  # three 2g per GPU
    # The first GPU is planned at t=0 for the first job (ready at 60 s, three 2g); the fourth job
    # (t=30) finds that supply spoken for and gets a second GPU (ready at 90 s).
    assert dynamic.mean_wait_h == pytest.approx((60 + 50 + 40 + 60 + 50 + 40) / 6 / 3600)


def test_random_mix_is_seeded():
    assert random_mix(3) == random_mix(3) != random_mix(4)
    assert sum(random_mix(3).values()) == pytest.approx(1.0)


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown MIG mode 'half'"):
        run("half", [])

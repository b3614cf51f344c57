from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from conftest import build_node
from slotwise.cli import app
from simulator.gangs import compare_gang_modes
from simulator.generate import gang_burst_arrivals, synthetic_arrivals, synthetic_cluster
from simulator.timeline import run_timeline, units_of
from simulator.traces import read_trace, write_trace


def test_trace_group_and_min_members_round_trip(tmp_path: Path):
    path = tmp_path / "pods.csv"
    path.write_text("name,gpu,group,min_members,arrival,duration\nw0,8,bert,2,0,60\nw1,8,bert,2,0,60\nsolo,1,,,0,60\n")
    arrivals = read_trace(path)
    units = units_of(arrivals)
    assert [(u.key, len(u.members), u.min_members, u.gang) for u in units] == [
        ("default/bert", 2, 2, True), ("default/solo", 1, 1, False)]
    for suffix in (".csv", ".jsonl"):
        write_trace(arrivals, tmp_path / f"back{suffix}")
        assert read_trace(tmp_path / f"back{suffix}") == arrivals


def test_generated_multi_worker_jobs_are_gangs():
    gangs = [u for u in units_of(synthetic_arrivals(300, seed=1)) if u.gang]
    assert gangs and all(u.key.split("/")[1].startswith("job-") and u.min_members == len(u.members) == 2 for u in gangs)


def test_a_gang_starts_whole_and_leaves_together():
    nodes = [build_node(f"n{i}", gpus=8, cpu=96_000, memory=1024 * 2**30, labels={"slotwise.io/rack": "r0"}) for i in range(4)]
    result = run_timeline(nodes, gang_burst_arrivals(gangs=2, workers=4, duration_s=100), "default", 0)
    by_gang: dict[str, set[tuple[float | None, float | None]]] = {}
    for p in result.pods:
        by_gang.setdefault(p.name.rsplit("-w", 1)[0], set()).add((p.start, p.end))
    assert all(len(times) == 1 for times in by_gang.values())  # same start and end for all members
    assert sorted(next(iter(t))[1] for t in by_gang.values()) == [106.0, 206.0]  # gang 0 is whole at 6 s; gang 1 waits for its room


def test_unaware_placement_deadlocks_where_gang_aware_completes_every_gang():
    figures = compare_gang_modes(synthetic_cluster(), gang_burst_arrivals(), "default", 42)
    assert figures["unaware"]["completed gangs"] == 0 and figures["unaware"]["gangs stuck part-placed"] == 6
    assert figures["unaware"]["idle GPU-hours held"] > 100
    assert figures["aware"]["completed gangs"] == 6 and figures["aware"]["idle GPU-hours held"] == 0


def test_simulate_gangs_prints_the_side_by_side_table_and_rejects_unknown_modes():
    runner = CliRunner()
    result = runner.invoke(app, ["simulate", "--gang-burst", "6", "--gangs", "unaware,aware"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line.split("│")[2:4] for line in result.output.splitlines() if line.count("│") == 4}
    assert [c.strip() for c in rows["completed gangs"]] == ["0", "6"]
    bad = runner.invoke(app, ["simulate", "--gangs", "sometimes"])
    assert bad.exit_code == 2 and "--gangs takes unaware, aware" in bad.output

"""The slotwise command as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from slotwise.cli import app
from scheduler.model.sources import read_pods
from slotwise.server.cache import ClusterCache

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_subcommands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "place" in result.output and "policies" in result.output


def test_policies_lists_every_registered_policy():
    result = runner.invoke(app, ["policies"])
    assert result.exit_code == 0
    for name in ("default", "gpu-pack", "cpu-spread", "fgd", "bestfit", "dotprod", "gpu-clustering", "gpu-packing", "random"):
        assert name in result.output.split()


def test_place_runs_on_generated_cluster_and_reports():
    result = runner.invoke(app, ["place", "--count", "120", "--show", "2"])
    assert result.exit_code == 0, result.output
    assert "placed" in result.output and "GPU allocated" in result.output
    assert "->" in result.output  # the decisions shown name their node


def test_place_json_is_reproducible_with_a_seed():
    args = ["place", "--count", "80", "--policy", "random", "--seed", "7", "--json"]
    first, second = runner.invoke(app, args), runner.invoke(app, args)
    assert first.exit_code == 0
    assert first.output == second.output
    records = [json.loads(line) for line in first.output.splitlines() if line.startswith("{")]
    assert len(records) == 80 and all(set(r) == {"pod", "node", "gpus", "reason"} for r in records)


def _node(name: str, gpus: int) -> dict:
    alloc = {"cpu": "32", "memory": "128Gi", "pods": "110", "nvidia.com/gpu": str(gpus)}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": "A100"}},
            "status": {"capacity": alloc, "allocatable": alloc}}


def _pod(name: str, gpus: str, node: str | None = None) -> dict:
    spec = {"containers": [{"name": "main", "image": "trainer", "resources": {
        "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": gpus}, "limits": {"nvidia.com/gpu": gpus}}}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "team-a"}, "spec": spec,
            "status": {"phase": "Running" if node else "Pending"}}


def test_place_reads_kubectl_json_and_explains_unschedulable(tmp_path):
    nodes = tmp_path / "nodes.json"
    pods = tmp_path / "pods.json"
    nodes.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [_node("gpu-a", 4), _node("gpu-b", 2)]}))
    running = _pod("running", "2", node="gpu-a")
    pending = [_pod("fits", "2"), _pod("too-big", "8")]
    pods.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [running, *pending]}))
    result = runner.invoke(app, ["place", "--nodes", str(nodes), "--pods", str(pods), "--json"])
    assert result.exit_code == 0, result.output
    records = {r["pod"]: r for r in map(json.loads, result.output.splitlines())}
    assert records["team-a/fits"]["node"] == "gpu-a"  # packs onto the node already in use
    assert records["team-a/too-big"]["reason"] == "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."


def test_place_and_the_service_cache_skip_finished_pods_alike(tmp_path):
    """A finished pod (Succeeded or Failed) holds nothing: its node's GPUs are free for the
    pending one, in ``slotwise place`` as in the service's cluster cache."""
    nodes = tmp_path / "nodes.json"
    pods = tmp_path / "pods.json"
    nodes.write_text(json.dumps({"kind": "List", "items": [_node("gpu-a", 4)]}))
    done = [_pod(phase.lower(), "2", node="gpu-a") for phase in ("Succeeded", "Failed")]
    for pod, phase in zip(done, ("Succeeded", "Failed"), strict=True):
        pod["status"]["phase"] = phase
    pods.write_text(json.dumps({"kind": "List", "items": [*done, _pod("waiting", "4")]}))
    result = runner.invoke(app, ["place", "--nodes", str(nodes), "--pods", str(pods), "--json"])
    assert result.exit_code == 0, result.output
    [record] = map(json.loads, result.output.splitlines())
    assert (record["pod"], record["node"]) == ("team-a/waiting", "gpu-a")

    cache = ClusterCache()
    cache.replace("nodes", json.loads(nodes.read_text())["items"])
    cache.replace("pods", json.loads(pods.read_text())["items"])
    assert [p.key for p in cache.pods()] == [p.key for p in read_pods(pods)] == ["team-a/waiting"]


def test_place_reports_bad_input_without_a_traceback(tmp_path):
    bad = tmp_path / "nodes.json"
    bad.write_text('{"items": [{"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "lots"}}}]}')
    result = runner.invoke(app, ["place", "--nodes", str(bad)])
    assert result.exit_code == 2
    output = " ".join(result.output.split())  # the console wraps long paths at its width
    assert "item 0" in output and "cpu" in output and "Traceback" not in output


@pytest.mark.parametrize("args", [["--count", "-5"], ["--count", "0"], ["--show", "-1"]])
def test_place_refuses_counts_below_their_range(args):
    result = runner.invoke(app, ["place", *args])
    assert result.exit_code == 2 and f"Invalid value for '{args[0]}'" in result.output


def test_place_rejects_unknown_policy():
    result = runner.invoke(app, ["place", "--policy", "nope", "--count", "5"])
    assert result.exit_code == 2
    assert "unknown placement policy 'nope'" in result.output


def test_output_to_a_pipe_is_never_cut(tmp_path):
    """Rich lays out 80 columns when stdout is not a terminal; scripts piping slotwise must read
    whole values (the quota usage table cut nvidia.com/gpu to nvidia.co…)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"SLOTWISE_DB": f"sqlite:///{tmp_path / 'db'}"}
    slotwise = [sys.executable, "-m", "slotwise.cli"]
    subprocess.run([*slotwise, "quota", "import", str(ROOT / "docs" / "examples" / "pools.yaml")], env=env, check=True,
                   capture_output=True)
    usage = subprocess.run([*slotwise, "quota", "usage"], env=env, capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0, usage.stderr
    assert "…" not in usage.stdout and usage.stdout.count("nvidia.com/gpu") >= 6
    assert max(map(len, usage.stdout.splitlines())) > 80


@pytest.mark.parametrize("command", ["place", "simulate"])
def test_the_default_profile_is_the_engines(command):
    """The commands name it without importing the placement engine, so a test holds them equal."""
    from scheduler.placement.profile import DEFAULT

    [policy] = [p for p in typer.main.get_command(app).commands[command].params if p.name == "policy"]
    assert policy.default == DEFAULT

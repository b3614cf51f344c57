"""``slotwise mig``: show, plan and simulate, and bad input exiting 2 with a message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from slotwise.commands.mig import app

runner = CliRunner()

LAYOUT = {"node": "gpu-a1", "gpus": [
    {"index": 0, "product": "NVIDIA-A100-SXM4-80GB", "mig_enabled": True,
     "instances": [{"profile": "2g.20gb", "start": 0, "size": 2, "in_use": True},
                   {"profile": "3g.40gb", "start": 4, "size": 4, "in_use": False}]},
    {"index": 1, "product": "NVIDIA-A100-SXM4-80GB", "mig_enabled": True, "instances": []},
]}


@pytest.fixture
def layout_file(tmp_path):
    path = tmp_path / "layout.json"
    path.write_text(json.dumps(LAYOUT))
    return path


def test_show_draws_slots(layout_file):
    result = runner.invoke(app, ["show", "--layout", str(layout_file)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "gpu-a1"
    assert "2g.20gb*" in lines[1] and "3g.40gb" in lines[1] and "GPU 0" in lines[1]
    assert lines[2].count(".") == 8  # eight free slots
    example = runner.invoke(app, ["show", "--example", "NVIDIA-A30", "--gpus", "2"])
    assert example.exit_code == 0 and example.output.count("A30-24GB") == 2


def test_show_json_is_what_the_agents_report_and_reads_back(layout_file, tmp_path):
    shown = runner.invoke(app, ["show", "--layout", str(layout_file), "--json"])
    assert shown.exit_code == 0, shown.output
    [report] = json.loads(shown.output)
    assert report["node"] == "gpu-a1" and [i["profile"] for i in report["gpus"][0]["instances"]] == ["2g.20gb", "3g.40gb"]
    example = runner.invoke(app, ["show", "--example", "A100-SXM4-80GB", "--gpus", "3", "--json"])
    again = tmp_path / "again.json"
    again.write_text(example.output)
    assert runner.invoke(app, ["show", "--layout", str(again), "--json"]).output == example.output


def test_plan_writes_mig_parted_yaml(tmp_path, layout_file):
    out = tmp_path / "plan.yaml"
    result = runner.invoke(app, ["plan", "--demand", "2g.20gb=6,3g.40gb=2", "--gpus", "8",
                                 "--model", "A100-SXM4-80GB", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 of 8 GPUs change" in result.output and "2g.20gb: 6 of 6 served" in result.output
    document = yaml.safe_load(out.read_text())
    (name, entries), = document["mig-configs"].items()
    assert f"kubectl label node node-0 nvidia.com/mig.config={name} --overwrite" in result.output
    assert sum(e["mig-devices"].get("2g.20gb", 0) for e in entries) >= 6
    busy = runner.invoke(app, ["plan", "--demand", "4g.40gb=2", "--layout", str(layout_file), "--out", str(out)])
    assert busy.exit_code == 0 and "4g.40gb: 1 of 2 served" in busy.output  # GPU 0 holds a running 2g


def test_simulate_prints_the_comparison():
    result = runner.invoke(app, ["simulate", "--nodes", "1", "--gpus-per-node", "2", "--jobs", "60", "--modes", "whole,static,dynamic"])
    assert result.exit_code == 0, result.output
    for word in ("whole", "static", "dynamic", "jobs served", "slice utilisation"):
        assert word in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plan", "--demand", "2g.20gb:6", "--model", "A100-SXM4-80GB"], "expected PROFILE=COUNT"),
        (["plan", "--demand", "2g.20gb=6"], "give --layout FILE, or --model PRODUCT"),
        (["plan", "--demand", "2g.20gb=6", "--model", "Tesla-T4"], "GPU product 'Tesla-T4' is not MIG-capable"),
        (["plan", "--demand", "2g.20gb=1", "--layout", "missing.json"], "missing.json: No such file"),
        (["show"], "give either --layout FILE or --example PRODUCT"),
        (["simulate", "--mix", "2g=x"], "--mix: expected seed, random or KIND=SHARE"),
        (["simulate", "--modes", "whole,half"], "unknown mode 'half'"),
        (["simulate", "--mix", "9g=1", "--jobs", "5"], "A100-80GB has no 9g profile"),
        (["plan", "--demand", "9g.1gb=2", "--model", "A100-SXM4-80GB", "--gpus", "1"],
         "--demand: no GPU here offers '9g.1gb' (A100-80GB: 1g.10gb, 1g.10gb+me, 1g.20gb, 2g.20gb, 3g.40gb"),
    ],
)
def test_bad_input_exits_2_with_a_message(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_layout_file_names_the_problem(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**LAYOUT, "gpus": [{**LAYOUT["gpus"][0], "instances": [
        {"profile": "2g.20gb", "start": 6, "size": 2}]}]}))
    result = runner.invoke(app, ["show", "--layout", str(bad)])
    assert result.exit_code == 2
    assert "document 0: gpus.0: GPU 0: 2g.20gb cannot start at slot 6 (valid: 0, 2, 4)" in " ".join(result.output.split())
    (tmp_path / "text.json").write_text("nope")
    assert "not JSON" in runner.invoke(app, ["show", "--layout", str(tmp_path / "text.json")]).output


@pytest.mark.parametrize("command", ["plan --demand 3g.40gb=4", "show"])
def test_a_kubectl_node_list_as_layout_is_named_in_one_line(command):
    nodes = Path(__file__).parents[1] / "docs" / "examples" / "nodes.json"  # what `kubectl get nodes -o json` prints
    result = runner.invoke(app, [*command.split(), "--layout", str(nodes)])
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"error: {nodes}: Kubernetes objects (kind: List), not MIG layouts; "
                                          "--layout takes the layout documents the node agents report (docs/mig.md)"]


def test_the_agent_on_a_machine_without_nvml_stops_in_one_line(tmp_path):
    """The real pynvml, where no NVIDIA driver is installed: exit 2 and why, not a traceback."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA driver")
    token = tmp_path / "token"
    token.write_text("t")
    result = runner.invoke(app, ["agent", "--node", "n1", "--control-plane", "https://127.0.0.1:9", "--token-file",
                                 str(token), "--once"])
    assert result.exit_code == 2
    [line] = result.output.splitlines()
    assert line.startswith("error: NVML cannot start (") and "NVIDIA driver" in line


def test_the_modes_the_command_offers_are_the_simulators():
    """The command names them without importing the simulator (numpy), so a test holds them equal."""
    from mig import simulate
    from slotwise.commands import mig

    assert mig.MODES == simulate.MODES

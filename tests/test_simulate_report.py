"""`slotwise simulate`'s report as a person reads it (figures in the CLI's units, seeds summarised,
baselines beside compared files), the folder it goes to, and options refused before any run."""

from __future__ import annotations

import csv
import json
import re
import socket
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from burst.targets import burst_from_yaml
from quota.config import config_from_yaml
from slotwise.cli import app
from simulator.report import MARKER, earlier_report
from simulator.results import format_figure
from simulator.sweep import NO_BURST, NO_QUOTA, Scenario, compared

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def simulate(*args: str):
    return runner.invoke(app, ["simulate", *args], env={"COLUMNS": "300"})


def text_of(page: str) -> str:
    """The report without its embedded images, whose base64 holds digits of any kind."""
    return re.sub(r'src="data:image/png;base64,[^"]*"', "", page)


def table_after(page: str, heading: str) -> list[list[str]]:
    """The rows (header first) of the table under ``heading``."""
    table = page.split(f"<h2>{heading}</h2>", 1)[1].split("</table>", 1)[0]
    return [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in re.findall(r"<tr>(.*?)</tr>", table)]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two policies over two seeds, a random policy so that seeds differ."""
    out = tmp_path_factory.mktemp("report") / "o"
    result = simulate("--count", "400", "--policy", "default,random", "--seeds", "1..2", "--workers", "1",
                      "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


def test_figures_read_in_the_clis_units_and_raw_ones_are_gone(seeded: Path) -> None:
    page = text_of((seeded / "report.html").read_text())
    runs = list(csv.DictReader((seeded / "runs.csv").open()))
    for run in runs:
        for key, raw in run.items():
            if "." in raw and len(raw.split(".")[1]) > 1:  # 212144.336404, 0.741313: never in the page
                assert raw not in page, (key, raw)
    summary = {row[0]: row[1:] for row in table_after(page, "Summary")}
    assert summary[""] == ["default", "random"]
    for column, policy in enumerate(("default", "random")):
        values = {key: [float(r[key]) for r in runs if r["policy"] == policy] for key in runs[0] if key.endswith(" s")
                  or key in ("started", "mean GPU alloc")}
        for key, seen in values.items():
            mean, sd = float(np.mean(seen)), float(np.std(seen, ddof=1))
            cell = summary[key.removesuffix(" s")][column]
            if key == "started":
                assert cell == f"{mean:,.0f}"
            elif key == "mean GPU alloc":
                assert re.fullmatch(r"\d+\.\d( ± \d+\.\d)?%", cell) and cell.startswith(f"{100 * mean:.1f}")
            else:  # durations: minutes, or hours from two hours up, with the spread in the same unit
                scale, unit = (3600, "h") if mean >= 7200 else (60, "min")
                assert cell == (f"{mean / scale:,.1f} ± {sd / scale:,.1f} {unit}" if sd else
                                f"{mean / scale:,.1f} {unit}"), (policy, key)
    assert any(" h" in cell for cells in summary.values() for cell in cells)


def test_seeds_are_summarised_one_row_per_policy(seeded: Path) -> None:
    page = text_of((seeded / "report.html").read_text())
    kinds = table_after(page, "Wait and completion by kind")
    assert kinds[0][:2] == ["policy", "kind"] and "seed" not in kinds[0]
    assert sorted((row[0], row[1]) for row in kinds[1:]) == [(p, k) for p in ("default", "random")
                                                              for k in ("job", "notebook", "serving")]
    assert any("±" in cell for row in kinds[1:] if row[0] == "random" for cell in row)
    projects = table_after(page, "By project")
    assert len(projects) - 1 == 2 * len({row[1] for row in projects[1:]})
    # Without quota or overflow, the figures that need them are left out.
    assert "borrowed GPUs" not in projects[0] and "burst cost" not in projects[0]
    assert "mean ± standard deviation over 2 seeds" in page


def test_cpu_allocation_and_fragmentation_are_plotted_over_time(seeded: Path) -> None:
    page = (seeded / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2
    caption = re.search(r'alt="timeline".*?<figcaption>(.*?)</figcaption>', page)
    assert caption and "CPU allocated" in caption[1] and "GPU stranded" in caption[1]
    timeline = (seeded / "timeline.png").read_bytes()
    height = int.from_bytes(timeline[20:24], "big")  # PNG IHDR: three panels stacked
    assert height >= 800 and (seeded / "waits.png").stat().st_size > 0


def test_compared_burst_files_sit_beside_the_no_overflow_baseline(tmp_path: Path) -> None:
    result = simulate("--count", "200", "--burst", str(EXAMPLES / "burst.yaml"), "--workers", "1",
                      "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    summary = {row[0]: row[1:] for row in table_after((tmp_path / "o" / "report.html").read_text(), "Summary")}
    assert summary[""] == ["default + no overflow", "default + burst.yaml"]
    assert summary["burst pods"][0] == "0" and summary["burst cost"][0] == "0"
    runs = json.loads((tmp_path / "o" / "results.json").read_text())["runs"]
    assert [r["policy"] for r in runs] == ["default + no overflow", "default + burst.yaml"]


def test_compared_quota_files_sit_beside_the_no_quota_baseline(tmp_path: Path) -> None:
    result = simulate("--count", "200", "--quota", str(EXAMPLES / "pools.yaml"), "--workers", "1",
                      "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    summary = {row[0]: row[1:] for row in table_after((tmp_path / "o" / "report.html").read_text(), "Summary")}
    assert summary[""] == ["default + no quota", "default + pools.yaml"]
    assert "default + no quota" in result.output


def test_a_report_replaces_the_earlier_one_and_keeps_everything_else(tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert simulate("--count", "100", "--out", str(out)).exit_code == 0
    (out / "notes.txt").write_text("mine")
    trace = tmp_path / "pods.csv"
    trace.write_text("name,cpu,gpu\na,1,1\nb,2,1\n")
    result = simulate("--trace", str(trace), "--out", str(out))  # a fill run: no pods.csv, no timeline
    assert result.exit_code == 0, result.output
    document = json.loads((out / "results.json").read_text())
    assert document["report"] == MARKER and document["config"]["mode"] == "fill"
    assert sorted(p.name for p in out.iterdir()) == sorted([*document["files"], "notes.txt"])
    assert "pods.csv" not in document["files"] and (out / "notes.txt").read_text() == "mine"


def test_a_folder_holding_other_files_is_refused_untouched(tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "projects.csv").write_text("not slotwise's")
    result = simulate("--count", "50", "--out", str(out))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and "holds files and no slotwise report" in result.output
    assert [p.name for p in out.iterdir()] == ["projects.csv"] and (out / "projects.csv").read_text() == "not slotwise's"


def test_only_report_files_an_earlier_report_lists_are_replaced(tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    for name in ("pods.csv", "timeline.png", "notes.txt"):
        (out / name).write_text("x")
    (tmp_path / "outside.csv").write_text("x")
    files = ["pods.csv", "notes.txt", "../outside.csv", "results.json", 7]
    (out / "results.json").write_text(json.dumps({"report": MARKER, "files": files}))
    assert sorted(p.name for p in earlier_report(out)) == ["pods.csv", "results.json"]
    (out / "results.json").write_text(json.dumps({"report": "something else", "files": files}))
    with pytest.raises(ValueError, match="no slotwise report"):
        earlier_report(out)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--inflation", "-1"], "--inflation must be a positive number"),
        (["--inflation", "0"], "--inflation must be a positive number"),
        (["--inflation", "nan"], "--inflation must be a positive number"),
        (["--count", "-5"], "--count must be 1 or more"),
        (["--workers", "0"], "--workers must be 1 or more"),
        (["--workload-seed", "-1"], "--workload-seed must be 0 or more"),
        (["--gang-burst", "0"], "--gang-burst must be 1 or more"),
        (["--seeds", "5..1"], "seeds: '5..1' runs backwards"),
        (["--seeds", "-3"], "seeds: -3 is negative"),
        (["--seeds", "1,2,1..3"], "names a seed twice"),
    ],
)
def test_numbers_out_of_range_are_refused_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = simulate(*args, "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and message in result.output
    assert not (tmp_path / "o").exists()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("form", ["127.0.0.1:{}", "ray://127.0.0.1:{}", "auto"])
def test_a_ray_address_without_a_cluster_is_refused_quickly(tmp_path: Path, monkeypatch, form: str) -> None:
    """Refused before Ray starts: ray.init retries a dead address for minutes."""
    ray = pytest.importorskip("ray")
    port = closed_port()
    if form == "auto":  # Ray reads the variable first; a stray cluster on this machine must not answer
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    monkeypatch.setattr(ray, "init", lambda **_: pytest.fail("Ray was started for an address nothing listens at"))
    result = simulate("--count", "50", "--seeds", "1..2", "--ray-address", form.format(port), "--out",
                      str(tmp_path / "o"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert f"no Ray cluster at '{form.format(port) if form != 'auto' else f'127.0.0.1:{port}'}'" in result.output
    assert "ray start --head" in result.output


def test_format_figure_units() -> None:
    assert format_figure("wait p99 s", 212144.336404) == "58.9 h"
    assert format_figure("wait p50 s", 90, 30) == "1.5 ± 0.5 min"
    assert format_figure("started", 1000.0) == "1,000"
    assert format_figure("mean GPU alloc", 0.741313) == "74.1%"
    assert format_figure("burst cost", None) == ""


def test_with_burst_files_the_quota_files_are_budgets_and_the_baseline_is_no_overflow() -> None:
    pools = config_from_yaml((EXAMPLES / "pools.yaml").read_text())
    overflow = burst_from_yaml((EXAMPLES / "burst.yaml").read_text())
    both = Scenario("s", (), (), quotas=(("pools.yaml", pools),), bursts=(("burst.yaml", overflow),))
    assert compared(both) == (["pools.yaml"], [NO_BURST, "burst.yaml"])
    assert compared(Scenario("s", (), (), quotas=(("pools.yaml", pools),))) == ([NO_QUOTA, "pools.yaml"], [None])
    assert compared(Scenario("s", (), ())) == ([None], [None])

"""Write what a set of runs produced: CSV and JSON figures, PNG plots and one self-contained HTML
report. Same runs, same bytes: figures are rounded and plots carry no version or date."""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from simulator.results import PROJECT_FIGURES, FillResult, Result, TimelineResult  # noqa: E402

_PNG_METADATA = {"Software": None}


def means(results: Sequence[Result]) -> list[tuple[str, int, dict[str, float]]]:
    """Per policy (in first-seen order): how many runs, and the mean of each summary figure."""
    by_policy: dict[str, list[dict[str, float]]] = {}
    for r in results:
        by_policy.setdefault(r.policy, []).append(r.summary())
    out = []
    for policy, summaries in by_policy.items():
        keys = list(dict.fromkeys(k for s in summaries for k in s))
        out.append((policy, len(summaries), {k: round(float(np.mean([s[k] for s in summaries if k in s])), 6)
                                             for k in keys}))
    return out


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(["" if v is None else v for v in row] for row in rows)


def _fill_curves(results: Sequence[FillResult]) -> dict[str, dict[int, float]]:
    """Per policy, the allocation curve averaged over its seeds (points all seeds reached)."""
    curves: dict[str, list[dict[int, float]]] = {}
    for r in results:
        curves.setdefault(r.policy, []).append(r.curve())
    return {policy: {x: float(np.mean([c[x] for c in cs])) for x in sorted(set.intersection(*(set(c) for c in cs)))}
            for policy, cs in curves.items()}


def _png(fig: plt.Figure, path: Path) -> None:
    fig.savefig(path, format="png", dpi=110, metadata=_PNG_METADATA)
    plt.close(fig)


def _plot_fill(results: Sequence[FillResult], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    top = 0
    for policy, curve in _fill_curves(results).items():
        xs = list(curve)
        ax.plot(xs, [100 * curve[x] for x in xs], label=policy, linewidth=1.5)
        top = max(top, xs[-1])
    ax.plot([0, 100, top], [0, 100, 100], color="grey", linestyle=":", linewidth=1, label="every GPU allocated")
    ax.set_xlabel("arrived workload (% of GPU capacity)")
    ax.set_ylabel("GPU allocation ratio (%)")
    ax.set_title("GPU allocation as the workload arrives")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    _png(fig, path)


def _plot_timeline(results: Sequence[TimelineResult], path: Path) -> None:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7))
    seen: set[str] = set()
    for r in results:
        if r.policy in seen:  # one seed per policy keeps the time plot readable
            continue
        seen.add(r.policy)
        top.step([s.time / 3600 for s in r.samples], [100 * s.gpu_allocated for s in r.samples], where="post",
                 label=f"{r.policy} (seed {r.seed})", linewidth=1)
    top.set_xlabel("time (h)")
    top.set_ylabel("GPU allocated (%)")
    top.grid(alpha=0.3)
    top.legend(loc="upper right")
    by_policy: dict[str, list[float]] = {}
    for r in results:
        by_policy.setdefault(r.policy, []).extend(r.waits())
    for policy, waits in by_policy.items():
        values = np.sort(np.array(waits) / 60)
        bottom.step(values, np.arange(1, len(values) + 1) / max(len(values), 1), where="post", label=policy)
    bottom.set_xscale("symlog", linthresh=1)
    bottom.set_xlabel("wait before start (min)")
    bottom.set_ylabel("share of started pods")
    bottom.grid(alpha=0.3)
    bottom.legend(loc="lower right")
    fig.tight_layout()
    _png(fig, path)


def _table_html(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{'' if v is None else html.escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image_html(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _means_rows(results: Sequence[Result]) -> tuple[list[str], list[list[Any]]]:
    table = means(results)
    keys = list(dict.fromkeys(k for _, _, m in table for k in m))
    return ["policy", "runs", *keys], [[policy, n, *(m.get(k, "") for k in keys)] for policy, n, m in table]


def write_report(results: Sequence[Result], out: Path, title: str, config: dict[str, Any]) -> list[Path]:
    """Write the run's files into ``out`` (created if needed) and return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def csv_file(name: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        _write_csv(out / name, header, rows)
        written.append(out / name)

    header, rows = _means_rows(results)
    csv_file("means.csv", header, rows)
    summaries = [r.summary() for r in results]
    keys = list(dict.fromkeys(k for s in summaries for k in s))
    csv_file("runs.csv", ["policy", "seed", *keys], [[r.policy, r.seed, *(s.get(k, "") for k in keys)]
                                                     for r, s in zip(results, summaries)])
    csv_file("failed.csv", ["policy", "seed", "reason", "pods"],
             [[r.policy, r.seed, reason, n] for r in results for reason, n in r.failed.items()])
    fills = [r for r in results if isinstance(r, FillResult)]
    timelines = [r for r in results if isinstance(r, TimelineResult)]
    plots: list[Path] = []
    if fills:
        csv_file("curve.csv", ["policy", "seed", "arrived_pct", "gpu_allocation"],
                 [[r.policy, r.seed, x, round(v, 6)] for r in fills for x, v in r.curve().items()])
        _plot_fill(fills, out / "allocation.png")
        plots.append(out / "allocation.png")
    if timelines:
        csv_file("pods.csv", ["policy", "seed", "pod", "kind", "project", "arrival_s", "start_s", "end_s", "wait_s",
                              "completion_s", "waiting_reason"],
                 [[r.policy, r.seed, p.name, p.kind, p.project, p.arrival, p.start, p.end, p.wait, p.completion, p.reason]
                  for r in timelines for p in r.pods])
        csv_file("utilisation.csv", ["policy", "seed", "time_s", "gpu_allocated", "cpu_allocated", "pending",
                                     "fragmentation"],
                 [[r.policy, r.seed, s.time, round(s.gpu_allocated, 6), round(s.cpu_allocated, 6), s.pending,
                   round(s.fragmentation, 6)] for r in timelines for s in r.samples])
        project_rows = [[r.policy, r.seed, project, *figures.values()] for r in timelines
                        for project, figures in r.projects().items()]
        csv_file("projects.csv", ["policy", "seed", "project", *PROJECT_FIGURES], project_rows)
        _plot_timeline(timelines, out / "timeline.png")
        plots.append(out / "timeline.png")
    written += plots
    document = {"title": title, "config": config, "means": [{"policy": p, "runs": n, **m} for p, n, m in means(results)],
                "runs": [r.to_dict() for r in results]}
    (out / "results.json").write_text(json.dumps(document, indent=1) + "\n")
    written.append(out / "results.json")

    failed_rows = [[r.policy, r.seed, reason, n] for r in results for reason, n in r.failed.items()]
    failed_html = _table_html(["policy", "seed", "reason", "pods"], failed_rows) if failed_rows else "<p>None.</p>"
    config_rows = [[k, v] for k, v in config.items()]
    by_kind = ""
    if timelines:
        kind_rows = []
        for r in timelines:
            figures = r.to_dict()
            for kind, waits in figures["wait_s_by_kind"].items():
                done = figures["completion_s_by_kind"][kind]
                kind_rows.append([r.policy, r.seed, kind, *(waits.get(p, "") for p in ("p50", "p90", "p99")),
                                  *(done.get(p, "") for p in ("p50", "p90", "p99"))])
        by_kind = "<h2>Wait and completion by kind (seconds)</h2>" + _table_html(
            ["policy", "seed", "kind", "wait p50", "wait p90", "wait p99", "completion p50", "completion p90",
             "completion p99"], kind_rows)
        by_kind += "<h2>By project</h2>" + _table_html(["policy", "seed", "project", *PROJECT_FIGURES], project_rows)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
th {{ background: #f0f0f0; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Setup</h2>{_table_html(["setting", "value"], config_rows)}
<h2>Means over seeds</h2>{_table_html(header, rows)}
<h2>Plots</h2>{"".join(_image_html(p) for p in plots)}{by_kind}
<h2>Pods that could not be placed, by reason</h2>{failed_html}
<p>Figures per run: runs.csv, results.json; files beside this report.</p>
</body></html>
"""
    (out / "report.html").write_text(page)
    written.append(out / "report.html")
    return written

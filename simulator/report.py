"""Write what a set of runs produced: CSV and JSON figures, PNG plots and one self-contained HTML
report. Same runs, same bytes: figures are rounded and plots carry no version or date.

CSV and JSON keep every run's raw figures; the HTML report shows them as the CLI's tables do
(percentages, minutes or hours, counts), as means and spreads over seeds."""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from simulator.results import PROJECT_FIGURES, FillResult, Result, TimelineResult, figure_name, format_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_PNG_METADATA = {"Software": None}
#: What results.json says to mark its folder as a slotwise report, which a later run may replace.
MARKER = "slotwise simulate report"
#: Every file a report can hold; only these are ever removed from an earlier report's folder.
REPORT_FILES = frozenset({"report.html", "results.json", "means.csv", "runs.csv", "failed.csv", "curve.csv",
                          "allocation.png", "pods.csv", "utilisation.csv", "projects.csv", "timeline.png",
                          "waits.png"})


def means(results: Sequence[Result]) -> list[tuple[str, int, dict[str, float]]]:
    """Per policy (in first-seen order): how many runs, and the mean of each summary figure."""
    out = []
    for policy, runs in _by_policy(results).items():
        stats = mean_and_spread([r.summary() for r in runs])
        out.append((policy, len(runs), {k: round(mean, 6) for k, (mean, _) in stats.items()}))
    return out


def earlier_report(out: Path) -> list[Path]:
    """The files of the slotwise report already in ``out``, which a new report replaces (none if
    ``out`` is missing or empty). A folder holding anything else is refused: ValueError."""
    if not out.exists():
        return []
    if not out.is_dir():
        raise ValueError(f"--out {out}: not a folder")
    if not any(out.iterdir()):
        return []
    try:
        document = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        document = None
    if not isinstance(document, dict) or document.get("report") != MARKER:
        raise ValueError(f"--out {out}: the folder holds files and no slotwise report; "
                         "choose a new or empty folder, or an earlier report's")
    listed = document.get("files")
    names = [n for n in listed if isinstance(n, str) and n in REPORT_FILES] if isinstance(listed, list) else []
    return [out / name for name in names if (out / name).is_file()]


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


def _png(fig: Figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, format="png", dpi=110, metadata=_PNG_METADATA)
    plt.close(fig)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display
    import matplotlib.pyplot as plt

    return plt


def _plot_fill(results: Sequence[FillResult], path: Path) -> None:
    fig, ax = _pyplot().subplots(figsize=(7, 4.5))
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


#: The timeline plot's panels: the sample's field and its axis label.
_OVER_TIME = (("gpu_allocated", "GPU allocated (%)"), ("cpu_allocated", "CPU allocated (%)"),
              ("fragmentation", "GPU stranded (% of capacity)"))


def _plot_timeline(results: Sequence[TimelineResult], path: Path) -> None:
    """GPU and cpu allocation and fragmentation over time, one seed per policy (the first)."""
    fig, axes = _pyplot().subplots(len(_OVER_TIME), 1, figsize=(7, 8), sharex=True)
    seen: set[str] = set()
    for r in results:
        if r.policy in seen:  # one seed per policy keeps the plot readable
            continue
        seen.add(r.policy)
        hours = [s.time / 3600 for s in r.samples]
        for ax, (field, _) in zip(axes, _OVER_TIME):
            ax.step(hours, [100 * getattr(s, field) for s in r.samples], where="post",
                    label=f"{r.policy} (seed {r.seed})", linewidth=1)
    for ax, (_, name) in zip(axes, _OVER_TIME):
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right")
    axes[-1].set_xlabel("time (h)")
    fig.tight_layout()
    _png(fig, path)


def _plot_waits(results: Sequence[TimelineResult], path: Path) -> None:
    """How long started pods waited, all seeds of a policy together."""
    fig, ax = _pyplot().subplots(figsize=(7, 4))
    by_policy: dict[str, list[float]] = {}
    for r in results:
        by_policy.setdefault(r.policy, []).extend(r.waits())
    for policy, waits in by_policy.items():
        values = np.sort(np.array(waits) / 60)
        ax.step(values, np.arange(1, len(values) + 1) / max(len(values), 1), where="post", label=policy)
    ax.set_xscale("symlog", linthresh=1)
    longest = max((max(w) for w in by_policy.values() if w), default=0.0) / 60
    ax.set_xlim(0, max(longest, 1.0))  # waits are never negative; all zero still draws a readable axis
    ax.set_xlabel("wait before start (min)")
    ax.set_ylabel("share of started pods")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    _png(fig, path)


def _table_html(header: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = "", labels: int = 1) -> str:
    """A table that scrolls sideways, inside the page, when it is wider than the page; its first
    ``labels`` columns are names, aligned left, the rest figures."""
    def cells(tag: str, row: Sequence[Any]) -> str:
        return "".join(f'<{tag}{" class=label" if i < labels else ""}>{html.escape(str(v))}</{tag}>'
                       for i, v in enumerate(row))

    head = cells("th", header)
    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<div class="wide"><table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _image_html(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def mean_and_spread(figures: Sequence[Mapping[str, float | None]]) -> dict[str, tuple[float, float | None]]:
    """Per key, the mean over runs and, where runs differ, the standard deviation (runs without
    the figure are left out)."""
    out: dict[str, tuple[float, float | None]] = {}
    for key in dict.fromkeys(k for f in figures for k in f):
        values = [v for f in figures if (v := f.get(key)) is not None]
        if values:
            spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            out[key] = (float(np.mean(values)), spread or None)
    return out


def _cell(key: str, stat: tuple[float, float | None] | None) -> str:
    return format_figure(key, *stat) if stat else ""


def _by_policy(results: Sequence[Result]) -> dict[str, list[Result]]:
    groups: dict[str, list[Result]] = {}
    for r in results:
        groups.setdefault(r.policy, []).append(r)
    return groups


def _summary_html(groups: Mapping[str, Sequence[Result]]) -> str:
    """One row per figure, one column per policy (as the CLI prints it)."""
    counts = sorted({len(runs) for runs in groups.values()})
    caption = (f"mean ± standard deviation over {'/'.join(map(str, counts))} seeds; a figure without ± is the "
               "same in every seed" if counts[-1] > 1 else "one seed")
    stats = {policy: mean_and_spread([r.summary() for r in runs]) for policy, runs in groups.items()}
    keys = dict.fromkeys(k for s in stats.values() for k in s)
    rows = [[figure_name(k), *(_cell(k, s.get(k)) for s in stats.values())] for k in keys]
    return _table_html(["", *groups], rows, caption)


def _by_kind_html(groups: Mapping[str, Sequence[TimelineResult]]) -> str:
    keys = [f"{what} p{q} s" for what in ("wait", "completion") for q in (50, 90, 99)]
    rows = []
    for policy, runs in groups.items():
        documents = [r.to_dict() for r in runs]
        for kind in dict.fromkeys(k for d in documents for k in d["wait_s_by_kind"]):
            stats = mean_and_spread([{f"{what} {p} s": v for what in ("wait", "completion")
                             for p, v in d[f"{what}_s_by_kind"].get(kind, {}).items()} for d in documents])
            rows.append([policy, kind, *(_cell(k, stats.get(k)) for k in keys)])
    return _table_html(["policy", "kind", *map(figure_name, keys)], rows, labels=2)


def _by_project_html(groups: Mapping[str, Sequence[TimelineResult]]) -> str:
    shown = {k for runs in groups.values() for r in runs for k in r.project_figures()}
    keys = [k for k in PROJECT_FIGURES if k in shown]
    rows = []
    for policy, runs in groups.items():
        per_run = [r.projects() for r in runs]
        for project in dict.fromkeys(p for figures in per_run for p in figures):
            stats = mean_and_spread([figures[project] for figures in per_run if project in figures])
            rows.append([policy, project, *(_cell(k, stats.get(k)) for k in keys)])
    return _table_html(["policy", "project", *map(figure_name, keys)], rows, labels=2)


def _failed_html(groups: Mapping[str, Sequence[Result]]) -> str:
    """Pods never placed, by reason: per policy, the mean and spread over its runs (a run
    without the reason counts 0)."""
    reasons = dict.fromkeys(reason for runs in groups.values() for r in runs for reason in r.failed)
    if not reasons:
        return "<p>None.</p>"
    stats = {policy: mean_and_spread([{reason: float(r.failed.get(reason, 0)) for reason in reasons} for r in runs])
             for policy, runs in groups.items()}
    return _table_html(["reason", *groups], [[reason, *(_cell("pods", s.get(reason)) for s in stats.values())]
                                             for reason in reasons])


def _setting(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
.wide { overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; font-size: 0.9em; }
caption { text-align: left; padding: 0.3em 0; color: #555; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; white-space: normal; min-width: 5em; }
.label { text-align: left; }
figure { margin: 1em 0; }
img { max-width: 100%; }
"""


def _page(title: str, config: Mapping[str, Any], results: Sequence[Result], plots: Sequence[tuple[Path, str]]) -> str:
    groups = _by_policy(results)
    timelines = {p: [r for r in runs if isinstance(r, TimelineResult)] for p, runs in groups.items()}
    timelines = {p: runs for p, runs in timelines.items() if runs}
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Setup</h2>" + _table_html(["setting", "value"], [[k, _setting(v)] for k, v in config.items()], labels=2),
        "<h2>Summary</h2>" + _summary_html(groups),
        "<h2>Plots</h2>" + "".join(_image_html(path, caption) for path, caption in plots),
    ]
    if timelines:
        sections += ["<h2>Wait and completion by kind</h2>" + _by_kind_html(timelines),
                     "<h2>By project</h2>" + _by_project_html(timelines)]
    sections += ["<h2>Pods that could not be placed, by reason</h2>" + _failed_html(groups),
                 "<p>Every run's figures, unrounded: runs.csv, results.json and the other files beside this "
                 "report.</p>"]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n")


def write_report(results: Sequence[Result], out: Path, title: str, config: dict[str, Any]) -> list[Path]:
    """Write the run's files into ``out`` (created if needed) and return their paths. The files
    of an earlier report there go first; a folder holding anything else is refused (see
    :func:`earlier_report`)."""
    for path in earlier_report(out):
        path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    fills = [r for r in results if isinstance(r, FillResult)]
    timelines = [r for r in results if isinstance(r, TimelineResult)]
    names = ["means.csv", "runs.csv", "failed.csv"]
    names += ["curve.csv", "allocation.png"] if fills else []
    names += ["pods.csv", "utilisation.csv", "projects.csv", "timeline.png", "waits.png"] if timelines else []
    names += ["report.html", "results.json"]
    # First, so that a run stopped half way still leaves a folder the next run recognises.
    document = {"report": MARKER, "files": names, "title": title, "config": config,
                "means": [{"policy": p, "runs": n, **m} for p, n, m in means(results)],
                "runs": [r.to_dict() for r in results]}
    (out / "results.json").write_text(json.dumps(document, indent=1) + "\n")

    mean_rows = means(results)
    keys = list(dict.fromkeys(k for _, _, m in mean_rows for k in m))
    _write_csv(out / "means.csv", ["policy", "runs", *keys], [[p, n, *(m.get(k, "") for k in keys)]
                                                              for p, n, m in mean_rows])
    summaries = [r.summary() for r in results]
    keys = list(dict.fromkeys(k for s in summaries for k in s))
    _write_csv(out / "runs.csv", ["policy", "seed", *keys], [[r.policy, r.seed, *(s.get(k, "") for k in keys)]
                                                             for r, s in zip(results, summaries)])
    _write_csv(out / "failed.csv", ["policy", "seed", "reason", "pods"],
               [[r.policy, r.seed, reason, n] for r in results for reason, n in r.failed.items()])
    plots: list[tuple[Path, str]] = []
    if fills:
        _write_csv(out / "curve.csv", ["policy", "seed", "arrived_pct", "gpu_allocation"],
                   [[r.policy, r.seed, x, round(v, 6)] for r in fills for x, v in r.curve().items()])
        _plot_fill(fills, out / "allocation.png")
        plots.append((out / "allocation.png", "GPU allocation as the workload arrives, mean over seeds."))
    if timelines:
        _write_csv(out / "pods.csv", ["policy", "seed", "pod", "kind", "project", "arrival_s", "start_s", "end_s",
                                      "wait_s", "completion_s", "waiting_reason"],
                   [[r.policy, r.seed, p.name, p.kind, p.project, p.arrival, p.start, p.end, p.wait, p.completion,
                     p.reason] for r in timelines for p in r.pods])
        _write_csv(out / "utilisation.csv", ["policy", "seed", "time_s", "gpu_allocated", "cpu_allocated", "pending",
                                             "fragmentation"],
                   [[r.policy, r.seed, s.time, round(s.gpu_allocated, 6), round(s.cpu_allocated, 6), s.pending,
                     round(s.fragmentation, 6)] for r in timelines for s in r.samples])
        _write_csv(out / "projects.csv", ["policy", "seed", "project", *PROJECT_FIGURES],
                   [[r.policy, r.seed, project, *figures.values()] for r in timelines
                    for project, figures in r.projects().items()])
        _plot_timeline(timelines, out / "timeline.png")
        _plot_waits(timelines, out / "waits.png")
        plots += [(out / "timeline.png", "GPU and CPU allocated, and GPU stranded (idle GPU the workload's pods are "
                                         "expected not to fit in), over time: each policy's first seed."),
                  (out / "waits.png", "How long started pods waited: every seed of each policy.")]
    (out / "report.html").write_text(_page(title, config, results, plots))
    return [out / name for name in names]

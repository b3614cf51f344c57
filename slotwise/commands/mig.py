"""``slotwise mig``: show layouts as slot diagrams, plan repartitions, compare sharing modes, run the agent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from mig.catalog import CatalogError, GpuModel, model_for_product
from mig.geometry import Instance, Layout, empty
from slotwise.console import command_group, failure, make_console

# Each command imports what it needs when it runs (numpy, pydantic's report models, the planner).
if TYPE_CHECKING:
    from mig.report import NodeReport

#: What ``slotwise mig simulate`` compares (mig.simulate.MODES, which a test holds equal).
MODES = ("whole", "static", "dynamic", "slots")

app = command_group("MIG: slot layouts, repartition plans, static vs dynamic what-ifs, the node agent.")
console = make_console()
CELL = 12  # characters per memory slice in a slot diagram


class InputError(ValueError):
    """Input the command cannot use; printed, and the command exits 2."""


def read_reports(path: Path) -> list[NodeReport]:
    """Node layout documents from a JSON file: one document, or a list of them."""
    from pydantic import ValidationError

    from mig.report import NodeReport, error_text

    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from None
    except ValueError as exc:
        raise InputError(f"{path}: not JSON ({exc})") from None
    items = document if isinstance(document, list) else [document]
    kinds = {str(item["kind"]) for item in items if isinstance(item, dict) and "apiVersion" in item and "kind" in item}
    if kinds:  # layout documents have neither field: this is what kubectl prints (nodes.json), a common mix-up
        raise InputError(f"{path}: Kubernetes objects (kind: {', '.join(sorted(kinds))}), not MIG layouts; "
                         "--layout takes the layout documents the node agents report (docs/mig.md)")
    reports = []
    for k, item in enumerate(items):
        try:
            reports.append(NodeReport.model_validate(item))
        except ValidationError as exc:
            raise InputError(f"{path}: document {k}: {error_text(exc)}") from None
    return reports


def example_report(model: GpuModel, product: str, gpus: int, seed: int) -> NodeReport:
    """A node whose GPUs hold random valid instances, some in use."""
    import numpy as np

    from mig.report import node_report

    rng = np.random.default_rng(seed)
    layouts = []
    for _ in range(gpus):
        layout = empty(model)
        for _ in range(int(rng.integers(1, 5))):
            profile = model.profiles[int(rng.integers(len(model.profiles)))]
            starts = layout.free_starts(profile)
            if starts:
                layout = layout.adding(Instance(profile, starts[int(rng.integers(len(starts)))], bool(rng.random() < 0.5)))
        layouts.append(layout)
    return node_report("example-node", [product] * gpus, layouts)


def diagram(layout: Layout) -> str:
    """One GPU as a row of memory slices: ``[ 3g.40gb* ]`` blocks, in use marked ``*`` (red)."""
    by_start = {i.start: i for i in layout.instances}
    out, slot = [], 0
    while slot < layout.model.memory_slices:
        inst = by_start.get(slot)
        if inst is None:
            out.append(f"[dim]{'.':^{CELL}}[/dim]")
            slot += 1
            continue
        label = inst.name + ("*" if inst.in_use else "")
        colour = "red" if inst.in_use else "green"
        out.append(f"[{colour}][{label:^{CELL * inst.profile.size - 2}}][/{colour}]")
        slot += inst.profile.size
    return "".join(out)


def _ruler(model: GpuModel) -> str:
    return "".join(f"{s:^{CELL}}" for s in range(model.memory_slices))


@app.command()
def show(
    layout: Annotated[Path | None, typer.Option(help="Layout JSON: one node document (what the agent reports) or a list.")] = None,
    example: Annotated[str | None, typer.Option(help="Show a generated node of this GPU product instead (A100-SXM4-80GB).")] = None,
    gpus: Annotated[int, typer.Option(min=1, help="GPUs of the generated node.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the generated node.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the layouts as the agents report them (a list of node documents), for scripts.")] = False,
) -> None:
    """Show each GPU of a node as its memory slots; in-use instances are marked *."""
    try:
        if (layout is None) == (example is None):
            raise InputError("give either --layout FILE or --example PRODUCT")
        if layout is not None:
            reports = read_reports(layout)
        else:
            reports = [example_report(model_for_product(example), example, gpus, seed)]
    except (InputError, CatalogError) as exc:
        raise failure(console, exc) from None
    if as_json:
        typer.echo(json.dumps([r.model_dump() for r in reports], indent=1))
        return
    for report in reports:
        console.print(f"[bold]{report.node}[/bold]")
        for index, lay in report.layouts().items():
            name = lay.model.name + (" (inferred)" if lay.model.inferred else "")
            console.print(f"GPU {index:<2} {name:<24} {diagram(lay)}", highlight=False, soft_wrap=True)
        if report.gpus:
            widest = max((lay.model for lay in report.layouts().values()), key=lambda m: m.memory_slices)
            console.print(" " * 31 + _ruler(widest), style="dim", highlight=False, soft_wrap=True)


def parse_demand(text: str) -> dict[str, int]:
    """``2g.20gb=6,3g.40gb=2``: pending instances per profile."""
    demand: dict[str, int] = {}
    for part in text.split(","):
        name, sep, count = part.strip().partition("=")
        if not sep or not name.strip() or not count.strip().isdigit():
            raise InputError(f"--demand: expected PROFILE=COUNT such as 3g.40gb=2, got {part.strip()!r}")
        demand[name.strip()] = demand.get(name.strip(), 0) + int(count)
    return demand


def _check_offered(demand: dict[str, int], models: set[GpuModel]) -> None:
    """A profile no GPU of the plan offers is a typo or the wrong fleet, not unmet demand."""
    for profile in demand:
        if not any(m.has(profile) for m in models):
            offered = "; ".join(f"{m.name}: {', '.join(p.name for p in m.profiles)}"
                                for m in sorted(models, key=lambda m: m.name))
            raise InputError(f"--demand: no GPU here offers {profile!r} ({offered or 'no MIG GPUs'})")


@app.command()
def plan(
    demand: Annotated[str, typer.Option(help="Pending instances per profile: 2g.20gb=6,3g.40gb=2.")],
    layout: Annotated[Path | None, typer.Option(help="Current layouts: node documents as the agent reports them.")] = None,
    model: Annotated[str | None, typer.Option(help="Without --layout: GPU product of empty MIG GPUs (A100-SXM4-80GB).")] = None,
    gpus: Annotated[int, typer.Option(min=1, help="Without --layout: GPUs per node.")] = 8,
    nodes: Annotated[int, typer.Option(min=1, help="Without --layout: nodes.")] = 1,
    out: Annotated[Path, typer.Option(help="Where to write the mig-parted YAML.")] = Path("mig-plan.yaml"),
    time_limit: Annotated[float, typer.Option(min=0.01, help="CP-SAT time limit in seconds (then greedy).")] = 2.0,
    greedy: Annotated[bool, typer.Option(help="Skip CP-SAT and plan greedily.")] = False,
    driver: Annotated[int | None, typer.Option(help="Driver branch of the nodes (e.g. 470); default R510 or later.")] = None,
) -> None:
    """Plan new layouts for wholly free GPUs to serve pending demand; write mig-parted configs."""
    from mig.parted import CONFIG_LABEL, parted_configs, render
    from mig.planner import plan as make_plan

    try:
        wanted = parse_demand(demand)
        if layout is not None:
            reports = read_reports(layout)
            layouts = {r.node: r.layouts() for r in reports}
            models = {lay.model for node in layouts.values() for lay in node.values()}
        elif model is not None:
            gpu_model = model_for_product(model)
            layouts = {f"node-{n}": [empty(gpu_model)] * gpus for n in range(nodes)}
            models = {gpu_model}
        else:
            raise InputError("give --layout FILE, or --model PRODUCT (with --gpus and --nodes)")
        _check_offered(wanted, models)
        result = make_plan(layouts, wanted, time_limit=time_limit, driver=driver, solver="greedy" if greedy else "cp-sat")
    except (InputError, CatalogError, ValueError) as exc:
        raise failure(console, exc) from None
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    table = Table(title=f"Plan ({result.solver}{', optimal' if result.optimal else ''}): "
                        f"{len(result.changed)} of {len(result.gpus)} GPUs change")
    for column in ("node", "GPU", "before", "after"):
        table.add_column(column)
    for gpu in result.changed:
        table.add_row(gpu.node, str(gpu.index), str(gpu.before), str(gpu.after))
    console.print(table)
    for profile, n in sorted(result.demand.items()):
        console.print(f"{profile}: {result.served.get(profile, 0)} of {n} served", highlight=False)
    out.write_text(render(result))
    _, labels = parted_configs(result)
    console.print(f"wrote {out}", highlight=False)
    for node, value in labels.items():
        console.print(f"kubectl label node {node} {CONFIG_LABEL}={value[CONFIG_LABEL]} --overwrite", highlight=False)


def parse_mix(text: str, seed: int) -> dict[str, float]:
    """``seed`` (2g/3g/4g), ``random`` (drawn from the seed) or ``2g=0.5,3g=0.5``."""
    from mig.simulate import SEED_MIX, random_mix

    if text == "seed":
        return dict(SEED_MIX)
    if text == "random":
        return random_mix(seed)
    mix: dict[str, float] = {}
    for part in text.split(","):
        kind, sep, share = part.strip().partition("=")
        try:
            value = float(share)
        except ValueError:
            value = -1.0
        if not sep or not kind.strip().endswith("g") or value <= 0:
            raise InputError(f"--mix: expected seed, random or KIND=SHARE such as 2g=0.5,3g=0.5; got {part.strip()!r}")
        mix[kind.strip()] = value
    return mix


@app.command()
def simulate(
    model: Annotated[str, typer.Option(help="GPU product of every node.")] = "A100-SXM4-80GB",
    nodes: Annotated[int, typer.Option(min=1)] = 4,
    gpus_per_node: Annotated[int, typer.Option(min=1)] = 8,
    jobs: Annotated[int, typer.Option(min=1, help="Jobs in the generated stream.")] = 2000,
    mix: Annotated[str, typer.Option(help="Profile kinds asked: seed (2g/3g/4g), random, or 2g=0.5,3g=0.5.")] = "seed",
    load: Annotated[float, typer.Option(min=0.01, help="Asked slices over all slices, on average.")] = 1.0,
    hours: Annotated[float, typer.Option(min=0.01, help="Mean job duration in hours.")] = 4.0,
    reconfigure_s: Annotated[float, typer.Option(min=0, help="Seconds a GPU is unavailable while mig-manager repartitions it.")] = 120.0,
    modes: Annotated[str, typer.Option(help=f"Modes to compare: {','.join(MODES)}.")] = ",".join(MODES),
    seed: Annotated[int, typer.Option(help="Seed of the workload (and of a random mix).")] = 1,
) -> None:
    """What if: the same generated MIG workload under whole GPUs, static and dynamic partitions."""
    from mig.simulate import generate_jobs
    from mig.simulate import simulate as run_mode

    try:
        gpu_model = model_for_product(model)
        shares = parse_mix(mix, seed)
        chosen = [m.strip() for m in modes.split(",") if m.strip()]
        for m in chosen:
            if m not in MODES:
                raise InputError(f"--modes: unknown mode {m!r}; choose from {', '.join(MODES)}")
        stream = generate_jobs(jobs, shares, gpu_model, nodes * gpus_per_node, load=load, mean_duration_h=hours, seed=seed)
        outcomes = [run_mode(m, stream, gpu_model, nodes=nodes, gpus_per_node=gpus_per_node, mix=shares,
                             reconfigure_s=reconfigure_s) for m in chosen]
    except (InputError, CatalogError) as exc:
        raise failure(console, exc) from None
    described = ", ".join(f"{k} {v:.0%}" for k, v in sorted(shares.items()))
    table = Table(title=f"{jobs} jobs ({described}) on {nodes} x {gpus_per_node} {gpu_model.name}, load {load:g}, seed {seed}")
    for column in ("mode", "jobs served", "mean wait (h)", "slice utilisation", "repartitions"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for o in outcomes:
        table.add_row(o.mode, f"{o.served:,}", f"{o.mean_wait_h:.1f}", f"{o.utilisation:.1%}", f"{o.repartitions:,}")
    console.print(table)


@app.command()
def agent(
    node: Annotated[str, typer.Option(help="This node's name.", envvar="NODE_NAME")],
    control_plane: Annotated[str, typer.Option(help="Base URL of the control plane (https://slotwise.example).")],
    token_file: Annotated[Path, typer.Option(help="File holding the bearer token: the agents' shared token, or this pod's projected ServiceAccount token (audience slotwise; serve --mig-agents). Read at each report.")],
    interval: Annotated[float, typer.Option(min=1, help="Seconds between reports.")] = 60.0,
    once: Annotated[bool, typer.Option(help="Report once and exit.")] = False,
) -> None:
    """Read this node's MIG layout through NVML and report it to the control plane."""
    from mig.agent import NvmlUnavailable, check_nvml, run

    try:
        token_file.read_text()  # readable now; read again at each report (a projected token rotates)
        check_nvml()
    except OSError as exc:
        raise failure(console, f"{token_file}: {exc.strerror}") from None
    except NvmlUnavailable as exc:
        raise failure(console, exc) from None
    run(node, control_plane, lambda: token_file.read_text().strip(), interval, rounds=1 if once else None,
        log=lambda line: console.print(line, highlight=False))

"""``slotwise burst``: check a burst configuration, and see what it would do with a pod."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from slotwise.console import command_group, failure, make_console

if TYPE_CHECKING:
    from burst.targets import BurstConfig

app = command_group("Overflow to virtual-kubelet and Alibaba Cloud ECI, within budgets.")
console = make_console()

Targets = Annotated[Path, typer.Argument(help="Burst configuration (YAML).")]


def _load(path: Path) -> BurstConfig:
    from burst.targets import BurstConfigError, burst_from_yaml

    try:
        return burst_from_yaml(path.read_text())
    except (BurstConfigError, OSError) as exc:
        raise failure(console, exc) from None


@app.command()
def check(targets: Targets) -> None:
    """Validate a burst configuration and list its targets."""
    from burst.targets import ECI

    config = _load(targets)
    console.print(f"overflow after {config.threshold_s / 60:g} min of waiting; kinds: {', '.join(sorted(config.kinds))}; "
                  f"runs at most {config.max_runtime_s / 3600:g} h", highlight=False)
    table = Table()
    for column in ("target", "kind", "provider", "start-up", "offers"):
        table.add_column(column)
    for t in config.targets:
        offers = (", ".join(f"{i.name} ({i.gpus}x{i.gpu_model or 'CPU'}, {i.price:g}/h"
                            + (f", spot {i.spot_price:g}" if i.spot_price else "") + ")" for i in t.instance_types)
                  if t.kind == ECI else f"{t.cpu_hour_price:g}/vCPU-h" + (f", {t.gpu_hour_price:g}/GPU-h" if t.gpus else ""))
        table.add_row(t.name, t.kind, t.provider, f"{t.startup_s:g} s", offers)
    console.print(table)


@app.command()
def plan(
    targets: Targets,
    pod: Annotated[Path, typer.Option(help="The pod (v1.Pod JSON), or a PodList of a gang's members.")],
    waited: Annotated[str, typer.Option(help="How long it has waited (30m, 2h).")] = "1h",
    budget: Annotated[float, typer.Option(min=0, help="Burst budget its project has left.")] = 100.0,
) -> None:
    """Decide overflow for a pod or gang and print the JSON Patch that would send it."""
    from burst.decide import Overflow, decide_burst
    from burst.patch import burst_patch
    from quota.config import parse_duration
    from scheduler.model.k8s_json import ModelError, items, pod_from_k8s

    config = _load(targets)
    try:
        objects = list(items(json.loads(pod.read_text())))
        pods = [pod_from_k8s(o) for o in objects]
        waited_s = parse_duration(waited)
    except (OSError, json.JSONDecodeError, ModelError, ValueError) as exc:
        raise failure(console, exc) from None
    if not pods:
        raise failure(console, "no pod in the file")
    decision = decide_burst(config, pods[0].key, pods, waited_s, None, budget)
    console.print(f"{decision.__class__.__name__.lower()}: {decision.reason}", highlight=False)
    if isinstance(decision, Overflow):
        for obj, offer in zip(objects, decision.offers):
            typer.echo(json.dumps(burst_patch(obj, offer, config.max_runtime_s), indent=1))

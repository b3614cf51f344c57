"""A plan as the GPU Operator applies it: mig-parted configs and the ``nvidia.com/mig.config`` label.

mig-manager applies the config a node's label names, entry by entry, each entry to the GPU
indices in its ``devices``. Every GPU of a node that changes gets one entry per GPU index, and
its unchanged GPUs are listed with the instance counts they already have, so applying the config
leaves them as they are. Configs are named by their content, so nodes with the same plan share one.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from typing import Any

import yaml

from mig.planner import GpuPlan, Plan

CONFIG_LABEL = "nvidia.com/mig.config"
STATE_LABEL = "nvidia.com/mig.config.state"


def _entry(gpu: GpuPlan) -> dict[str, Any]:
    layout = gpu.after if gpu.changed else gpu.before
    return {"devices": [gpu.index], "mig-enabled": True, "mig-devices": dict(sorted(layout.counts().items()))}


def parted_configs(plan: Plan) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """The mig-parted document (``version: v1``, ``mig-configs``) for every node with a change, and
    the labels to set on those nodes."""
    per_node: dict[str, list[GpuPlan]] = defaultdict(list)
    for gpu in plan.gpus:
        per_node[gpu.node].append(gpu)
    configs: dict[str, list[dict[str, Any]]] = {}
    labels: dict[str, dict[str, str]] = {}
    for node in sorted(per_node):
        gpus = sorted(per_node[node], key=lambda g: g.index)
        if not any(g.changed for g in gpus):
            continue
        entries = [_entry(g) for g in gpus]
        digest = hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()[:10]
        name = f"slotwise-{digest}"
        configs[name] = entries
        labels[node] = {CONFIG_LABEL: name}
    return {"version": "v1", "mig-configs": dict(sorted(configs.items()))}, labels


def render(plan: Plan) -> str:
    """The YAML to merge into mig-manager's config and the ``kubectl label`` commands that apply it."""
    document, labels = parted_configs(plan)
    commands = "".join(
        f"#   kubectl label node {node} {CONFIG_LABEL}={value[CONFIG_LABEL]} --overwrite\n"
        for node, value in labels.items()
    )
    header = "# mig-parted configs planned by slotwise; apply each with:\n" + (commands or "#   (no change)\n")
    return header + yaml.safe_dump(document, sort_keys=False)

"""Cluster changes to try before making them: "what if we add 20 A100 nodes?"."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from scheduler.model.cluster import Node

#: The name that stands for nodes without GPUs in a change such as ``cpu=10``.
CPU_ONLY = "cpu"


def parse_additions(text: str) -> list[tuple[str, int]]:
    """``A100=20,cpu=4``: GPU model (or ``cpu``) and how many nodes to add."""
    additions = []
    for part in text.split(","):
        model, sep, count = part.strip().rpartition("=")
        if not sep or not model or not count.strip().isdigit() or int(count) == 0:
            raise ValueError(f"add-nodes: expected MODEL=COUNT such as A100=20 or cpu=4, got {part.strip()!r}")
        additions.append((model.strip(), int(count)))
    return additions


def add_nodes(nodes: Sequence[Node], additions: Sequence[tuple[str, int]]) -> list[Node]:
    """``nodes`` plus, for each (model, count), ``count`` copies of the first node of that GPU
    model (``cpu``: the first node without GPUs), named ``<node>-added-<i>``."""
    out = list(nodes)
    for model, count in additions:
        template = next((n for n in nodes if _model(n) == model), None)
        if template is None:
            known = sorted({m for m in map(_model, nodes) if m is not None})
            raise ValueError(f"add-nodes: no node of model {model!r} to copy; the cluster has {', '.join(known)}")
        out += [replace(template, name=f"{template.name}-added-{i}") for i in range(count)]
    return out


def _model(node: Node) -> str | None:
    return node.gpu_model if node.gpu_count else CPU_ONLY

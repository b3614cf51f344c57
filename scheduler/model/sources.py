"""Read nodes and pods from files: Kubernetes JSON (``kubectl get -o json``) or openb trace CSV."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from scheduler.model import k8s_json, openb
from scheduler.model.cluster import Node, Pod

T = TypeVar("T")


def _json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def _objects(path: Path, build: Callable[[Mapping[str, Any]], T],
             skip: Callable[[Mapping[str, Any]], bool] = lambda _: False) -> list[T]:
    out = []
    for i, obj in enumerate(k8s_json.items(_json(path))):
        if skip(obj):
            continue
        try:
            out.append(build(obj))
        except k8s_json.ModelError as exc:
            raise ValueError(f"{path}: item {i}: {exc}") from None
    return out


def read_nodes(path: str | Path) -> list[Node]:
    path = Path(path)
    return openb.read_nodes(path) if path.suffix == ".csv" else _objects(path, k8s_json.node_from_k8s)


def read_pods(path: str | Path) -> list[Pod]:
    """The pods of a file; of a ``kubectl get pods`` file, those not finished, as the service's
    cluster cache keeps them."""
    path = Path(path)
    if path.suffix == ".csv":
        return openb.read_pods(path)
    return _objects(path, k8s_json.pod_from_k8s, skip=k8s_json.finished)

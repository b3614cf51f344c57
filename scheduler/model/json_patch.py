"""RFC 6902 JSON Patch pieces for Kubernetes objects, as the webhooks and the admission loop
write them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def pointer(*parts: str) -> str:
    """A JSON Pointer (RFC 6901); '~' and '/' inside a key are escaped (label and annotation keys hold '/')."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def set_entries(obj: Mapping[str, Any], path: tuple[str, ...], entries: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Ops that set ``entries`` in the map at ``path`` of ``obj``: one op per entry, or one that
    adds the whole map where ``obj`` has none (or an empty one)."""
    if not entries:
        return []
    current: Any = obj
    for part in path:
        current = current.get(part) if isinstance(current, Mapping) else None
    if not isinstance(current, Mapping) or not current:
        return [{"op": "add", "path": pointer(*path), "value": dict(entries)}]
    return [{"op": "add", "path": pointer(*path, k), "value": v} for k, v in entries.items()]

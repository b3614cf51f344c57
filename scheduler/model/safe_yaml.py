"""YAML from users and clients (quota configurations, burst targets, workload classes): the safe
loader with merge keys bounded.

PyYAML (6.0.3 included) expands merge keys by copying the merged entries into each mapping, so
mappings that each merge the one before several times grow geometrically: 400 bytes, eight
levels of ``<<: [*a, *a, *a, *a, *a, *a]``, take minutes and gigabytes before anything else can
count them. Plain aliases are shared, not copied, and cost nothing here (callers that walk the
result bound those).

The pure-Python loader, not libyaml's (four times faster): libyaml's composer recurses in C, and
a document nested 100,000 deep kills the process where Python's raises RecursionError.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError

#: More entries than merge keys bring into any real configuration.
MAX_MERGED_ENTRIES = 100_000
_MERGE = "tag:yaml.org,2002:merge"


class _BoundedMergeLoader(yaml.SafeLoader):
    def __init__(self, stream: Any):
        super().__init__(stream)
        self._merged = 0

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        merges = any(key.tag == _MERGE for key, _ in node.value)
        super().flatten_mapping(node)  # flattens the mappings it merges first, through this method
        if merges:
            self._merged += len(node.value)
            if self._merged > MAX_MERGED_ENTRIES:
                raise ConstructorError(None, None, f"merge keys (<<) expand to more than {MAX_MERGED_ENTRIES:,} "
                                                   "entries", node.start_mark)


def load_yaml(text: str | bytes) -> Any:
    """``yaml.safe_load``, refusing (``yaml.YAMLError``) merge keys that expand past a bound."""
    return yaml.load(text, Loader=_BoundedMergeLoader)  # noqa: S506 - a SafeLoader subclass

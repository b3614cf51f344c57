"""Which GPU product a requested GPU model names.

Nodes carry GPU Feature Discovery's ``nvidia.com/gpu.product`` label: the NVML device name with
spaces as dashes (``NVIDIA-A100-SXM4-80GB``, ``Tesla-T4``, ``NVIDIA-H100-80GB-HBM3``), with
``-MIG-<profile>`` appended under the single MIG strategy and ``-SHARED`` under time-slicing.
Pods name models more loosely (``A100``, ``A100-80GB``), so a requested model matches a product
when, compared case-insensitively as dash-separated tokens and ignoring a leading vendor or
product-line token (``NVIDIA``, ``Tesla``, ``GeForce``, ``Quadro``):

- its first token is the product's first token (the model: ``A10`` is not ``A100``), and
- its other tokens (memory, form factor, ...) appear in the product's, in order;
- a MIG slice (a product with a ``MIG`` token) matches only a request that names ``MIG``:
  a slice is not a whole GPU.

A name always matches itself, so single-token model names (the openb traces' ``V100M32``, ``G2``)
match exactly as before. A bare ``80GB`` or ``SXM4`` names no model and matches nothing else;
select on memory with node affinity on ``nvidia.com/gpu.memory`` instead.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from functools import lru_cache

_SEPARATORS = re.compile(r"[-\s]+")  # GFD's dashes, or NVML's spaces
_PREFIXES = frozenset({"nvidia", "tesla", "geforce", "quadro"})
_MIG = "mig"


@lru_cache(maxsize=4096)
def _tokens(name: str) -> tuple[str, ...]:
    tokens = [t for t in _SEPARATORS.split(name.casefold()) if t]
    while len(tokens) > 1 and tokens[0] in _PREFIXES:
        del tokens[0]
    return tuple(tokens)


def model_matches(wanted: str, product: str) -> bool:
    """Whether a node whose GPU product is ``product`` is a GPU of the requested model ``wanted``."""
    if wanted.casefold() == product.casefold():
        return True
    want, have = _tokens(wanted), _tokens(product)
    if not want or not have or want[0] != have[0] or (_MIG in have and _MIG not in want):
        return False
    rest = iter(have[1:])
    return all(token in rest for token in want[1:])  # a subsequence: `in` consumes the iterator


def accepts_model(wanted: Collection[str] | None, product: str | None) -> bool:
    """Whether a GPU of ``product`` (None: unknown) satisfies a demand for any of ``wanted``
    (None: any model, known or not)."""
    if wanted is None:
        return True
    return product is not None and any(model_matches(w, product) for w in wanted)

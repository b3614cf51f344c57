"""Quota configuration: the tree of pools an admin writes (YAML, REST) and its validation.

Two layers: :class:`QuotaDocument` is the document as written (pydantic, strings such as "12" or
"512Gi"); :func:`compile_document` checks it and returns :class:`QuotaConfig`, plain values in base
units that policy code reads; :func:`read_config` does both for parsed YAML or JSON, listing
schema and semantic problems together. :func:`to_document` is the inverse, writing amounts
canonically, so that an exported configuration imports to the same configuration.

Per pool and resource: ``guaranteed`` (absent: 0, or for a pool with children, the sum of its
children's), ``max`` (hard cap on the subtree's usage; absent: none), ``shareable`` (how much of
the guarantee may be lent while idle; absent: none, a private pool), ``borrow_limit`` (how far the
subtree may go above its guarantee; absent: no limit) and a ``weight`` for sharing idle capacity.
A ``public`` pool belongs to nobody: everything in it is lent, and no workload is charged to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from scheduler.model.resources import (
    CPU,
    EPHEMERAL_STORAGE,
    GPU,
    MEMORY,
    MIG_PREFIX,
    PODS,
    ResourceError,
    format_quota_amount,
    is_gpu_quota,
    parse_quota_amount,
)
from scheduler.model.safe_yaml import load_yaml

LIMIT_FIELDS = ("guaranteed", "max", "shareable", "borrow_limit")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?")
# An extended resource is domain/name with a dotted domain (Kubernetes' qualified names).
_EXTENDED = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


class QuotaConfigError(ValueError):
    """A configuration slotwise refuses; every problem is listed, each naming its field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid quota configuration: " + "; ".join(problems))


def check_resource_name(name: str) -> None:
    """Quota resources: cpu, memory, ephemeral-storage, pods, hugepages-*, nvidia.com/gpu,
    nvidia.com/gpu/<model>, nvidia.com/mig-<profile> or an extended resource domain/name."""
    if name in (CPU, MEMORY, EPHEMERAL_STORAGE, PODS, GPU) or name.startswith("hugepages-"):
        return
    if is_gpu_quota(name) and len(name) > len(GPU) + 1 and "/" not in name[len(GPU) + 1:]:
        return
    if name.startswith(MIG_PREFIX) and len(name) > len(MIG_PREFIX):
        return
    if _EXTENDED.fullmatch(name) and not is_gpu_quota(name):
        return
    raise ResourceError(
        f"unknown resource {name!r}: expected cpu, memory, nvidia.com/gpu, nvidia.com/gpu/<model>, "
        "nvidia.com/mig-<profile> or an extended resource domain/name"
    )


def parse_duration(value: str | float | int) -> float:
    """Seconds from 90, "90s", "10m" or "1h30m"."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30s, 10m or 1h, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(value.strip())
        if not value.strip() or match is None:
            try:
                seconds = float(value)
            except ValueError:
                raise ValueError(f"expected a duration such as 30s, 10m or 1h, got {value!r}") from None
        else:
            h, m, s = (float(g) if g else 0.0 for g in match.groups())
            seconds = 3600 * h + 60 * m + s
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"a duration must be zero or more seconds, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


# The document ---------------------------------------------------------------------------------
# Strict: YAML's `true` is not an amount, and must not become 1.
Amounts = dict[str, StrictStr | StrictInt | StrictFloat]
Duration = Annotated[str | float | int, Field(union_mode="left_to_right")]


class BudgetDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Finite: JSON has no infinity, so an exported configuration would not import again.
    per_day: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    per_month: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class PoolFields(BaseModel):
    """What one pool says of itself, as documents and the REST API both write it."""

    model_config = ConfigDict(extra="forbid")
    description: str = ""
    public: bool = False
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    guaranteed: Amounts = Field(default_factory=dict)
    max: Amounts = Field(default_factory=dict)
    shareable: Amounts = Field(default_factory=dict)
    borrow_limit: Amounts = Field(default_factory=dict)
    budget: BudgetDocument | None = None

    def pool(self, name: str, parent: str | None, problems: list[str]) -> Pool:
        """The pool these fields describe; amounts that cannot be read are added to ``problems``."""
        limits = {what: parse_amounts(name, what, getattr(self, what), problems) for what in LIMIT_FIELDS}
        budget = Budget(self.budget.per_day, self.budget.per_month) if self.budget else None
        return Pool(name, parent, weight=self.weight, public=self.public, budget=budget, description=self.description,
                    **limits)


class PoolDocument(PoolFields):
    name: str
    pools: list[PoolDocument] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("a pool name is lower-case letters, digits, '-' and '.', at most 63, "
                             f"starting and ending with a letter or digit; got {value!r}")
        return value


class ReclaimDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: How long victims of a reclaim get to stop; no owner waits longer for its lent guarantee.
    grace: Duration = "5m"
    #: Loans younger than this are reclaimed only when older loans cannot free enough.
    min_loan: Duration = "10m"


class QuotaDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reclaim: ReclaimDocument = Field(default_factory=ReclaimDocument)
    pools: list[PoolDocument] = Field(default_factory=list)


# The compiled configuration --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Budget:
    per_day: float | None = None
    per_month: float | None = None


@dataclass(frozen=True, slots=True)
class Pool:
    """One pool with amounts in base units. Limits hold only the resources the admin named (a
    ``max`` of 0 is a real cap, so these are plain mappings, not :class:`Resources`)."""

    name: str
    parent: str | None = None
    guaranteed: Mapping[str, int] = field(default_factory=dict)
    max: Mapping[str, int] = field(default_factory=dict)
    shareable: Mapping[str, int] = field(default_factory=dict)
    borrow_limit: Mapping[str, int] = field(default_factory=dict)
    weight: float = 1.0
    public: bool = False
    budget: Budget | None = None
    description: str = ""

    def limits(self) -> Iterator[tuple[str, Mapping[str, int]]]:
        for name in LIMIT_FIELDS:
            yield name, getattr(self, name)


@dataclass(frozen=True, slots=True)
class ReclaimSettings:
    grace_s: float = 300.0
    min_loan_s: float = 600.0


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    """Pools with parents before children, siblings in the order given."""

    pools: tuple[Pool, ...] = ()
    reclaim: ReclaimSettings = ReclaimSettings()

    def pool(self, name: str) -> Pool:
        for p in self.pools:
            if p.name == name:
                return p
        raise KeyError(name)

    def children(self, name: str | None) -> list[Pool]:
        return [p for p in self.pools if p.parent == name]


def validation_problems(exc: ValidationError) -> list[str]:
    """A pydantic error as problems naming each field path."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "document"
        problems.append(f"{where}: {err['msg']}")
    return problems


def parse_document(data: Any) -> QuotaDocument:
    """The document from parsed YAML or JSON; shape errors name their pool."""
    try:
        return QuotaDocument.model_validate({} if data is None else data)
    except ValidationError as exc:
        raise QuotaConfigError(schema_problems(data, exc)[0]) from None


def read_config(data: Any) -> QuotaConfig:
    """The configuration from parsed YAML or JSON, or :class:`QuotaConfigError` listing every
    problem in one pass: what the schema refuses, each naming its pool, and what the checks find
    in the rest. A refused value is left out and its pool's own checks skipped (they would judge
    what is left), so that one typo hides nothing else."""
    data = {} if data is None else data
    problems: list[str] = []
    refused: set[str] = set()
    while True:  # each round leaves out at least one value, so this ends
        try:
            doc = QuotaDocument.model_validate(data)
            break
        except ValidationError as exc:
            found, pools, drop = schema_problems(data, exc)
            problems += found
            refused |= pools
            if () in drop:  # not a document at all
                raise QuotaConfigError(problems) from None
            data = _without(data, drop)
    try:
        config = compile_document(doc, unchecked=refused)
    except QuotaConfigError as exc:
        problems += exc.problems
    else:
        if not problems:
            return config
    raise QuotaConfigError(list(dict.fromkeys(problems)))  # pools repeated by YAML aliases, once


Loc = tuple[str | int, ...]


def schema_problems(data: Any, exc: ValidationError) -> tuple[list[str], set[str], set[Loc]]:
    """What the schema refuses in ``data``: the problems, each naming its pool by name rather than
    by position ("pool nlp: unknown field 'colour'"); the names of the pools they are in; and
    where in ``data`` each lies, to leave out (a pool without a usable name: the whole pool)."""
    found: dict[Loc, tuple[Loc, Any, Loc, list[dict[str, Any]]]] = {}
    for err in exc.errors():
        loc = tuple(err["loc"])
        pool, name, depth = _walk(data, loc)
        # Past what is in the data: a missing key, or the member tags of a union (one problem).
        where = loc[:depth + 1] if err["type"] == "missing" else loc[:depth]
        field = where[len(pool):]
        drop = pool if pool and (not field or field[0] == "name") else loc[:depth]
        found.setdefault(where, (pool, name, drop, []))[3].append(err)
    problems: list[str] = []
    pools: set[str] = set()
    for where, (pool, name, _, errs) in found.items():
        named = isinstance(name, str) and bool(name)
        if named:
            pools.add(name)
        label = [f"pool {name}" if named else ".".join(map(str, pool))] if pool else []
        field = [str(part) for part in where[len(pool):]]
        if errs[0]["type"] == "extra_forbidden":
            text = ": ".join([*label, *field[:-1], f"unknown field {field[-1]!r}"])
        else:
            message = " or ".join([errs[0]["msg"].removeprefix("Value error, "),
                                   *(e["msg"].removeprefix("Input should be ") for e in errs[1:])])
            text = ": ".join([*label, *field, message])
        problems.append(text if label or field else f"document: {text}")
    return problems, pools, {drop for _, _, drop, _ in found.values()}


def _walk(data: Any, loc: Loc) -> tuple[Loc, Any, int]:
    """Follow an error's location into ``data``: the innermost pool on the way (its location, or
    () when outside the pools, and its name as given), and how many steps the data holds."""
    value, depth, pool, name = data, 0, (), None
    for part in loc:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            value = value[part]
            if depth and loc[depth - 1] == "pools":
                pool, name = loc[:depth + 1], value.get("name") if isinstance(value, dict) else None
        else:
            break
        depth += 1
    return pool, name, depth


def _without(value: Any, drop: set[Loc], at: Loc = ()) -> Any:
    """``value`` less what lies at the locations in ``drop``."""
    if isinstance(value, dict):
        return {k: _without(v, drop, (*at, k)) for k, v in value.items() if (*at, k) not in drop}
    if isinstance(value, list):
        return [_without(v, drop, (*at, i)) for i, v in enumerate(value) if (*at, i) not in drop]
    return value


#: The ledger's "no limit": every amount stays below it, so that sums of many never wrap its
#: 64-bit counters (quantities themselves saturate at 2**63 - 1).
UNLIMITED = 2**60


def parse_amounts(pool: str, what: str, given: Amounts, problems: list[str]) -> dict[str, int]:
    """Amounts in base units; each bad entry adds a problem naming the pool, field and resource."""
    out: dict[str, int] = {}
    for resource, quantity in given.items():
        try:
            check_resource_name(resource)
            amount = parse_quota_amount(resource, quantity)
        except ResourceError as exc:
            problems.append(f"pool {pool}: {what}: {exc}")
            continue
        if amount >= UNLIMITED:
            problems.append(f"pool {pool}: {what}: {resource}: {quantity!r} is more than any cluster holds")
        else:
            out[resource] = amount
    return out


def _flatten(docs: list[PoolDocument], parent: str | None) -> Iterator[tuple[PoolDocument, str | None]]:
    for doc in docs:
        yield doc, parent
        yield from _flatten(doc.pools, doc.name)


def _show(resource: str, amount: int) -> str:
    return format_quota_amount(resource, amount)


def compile_document(doc: QuotaDocument, unchecked: AbstractSet[str] = frozenset()) -> QuotaConfig:
    """Check the document and return the configuration, or raise :class:`QuotaConfigError`
    listing every problem. Pools named in ``unchecked`` skip their own checks (their names and
    amounts are still read)."""
    problems: list[str] = []
    pools: list[Pool] = []
    seen: set[str] = set()
    repeated: set[str] = set()
    for d, parent in _flatten(doc.pools, None):
        if d.name in seen and d.name not in repeated:  # once: a name may be used thousands of times
            problems.append(f"pool {d.name}: the name is used twice")
            repeated.add(d.name)
        seen.add(d.name)
        pools.append(d.pool(d.name, parent, problems))
    # Over distinct names: found pool by pool, children made the checks quadratic, and a few
    # hundred bytes of YAML aliases (thousands of pools of one name) took minutes.
    children = children_by_parent({p.name: p for p in pools}.values())
    guarantee = guarantees(children)
    for p in pools:
        if p.name not in unchecked:
            problems += _check_pool(p, children.get(p.name, []), guarantee)
    try:
        reclaim = ReclaimSettings(parse_duration(doc.reclaim.grace), parse_duration(doc.reclaim.min_loan))
    except ValueError as exc:
        problems.append(f"reclaim: {exc}")
        reclaim = ReclaimSettings()
    if problems:
        raise QuotaConfigError(problems)
    return QuotaConfig(tuple(pools), reclaim)


def children_by_parent(pools: Iterable[Pool]) -> dict[str, list[Pool]]:
    """Each parent's name with its child pools, in the order given."""
    children: dict[str, list[Pool]] = {}
    for p in pools:
        if p.parent is not None:
            children.setdefault(p.parent, []).append(p)
    return children


def guarantees(children: Mapping[str, list[Pool]]) -> Callable[[Pool], dict[str, int]]:
    """Each pool's effective guarantee, given each name's children: the guarantee as given, where
    a pool with children that names no guarantee for a resource guarantees the sum of its
    children's. Worked out once per pool."""
    done: dict[int, dict[str, int]] = {}
    summing: set[str] = set()  # a name used twice on one path (refused anyway) must not recurse forever

    def guarantee(p: Pool) -> dict[str, int]:
        if id(p) in done:
            return done[id(p)]
        out = dict(p.guaranteed)
        if p.name in summing:
            return out
        summing.add(p.name)
        for c in children.get(p.name, []):
            for resource, amount in guarantee(c).items():
                if resource not in p.guaranteed:
                    out[resource] = out.get(resource, 0) + amount
        summing.discard(p.name)
        done[id(p)] = out
        return out

    return guarantee


def _check_pool(p: Pool, children: list[Pool], guarantee: Callable[[Pool], dict[str, int]]) -> list[str]:
    problems = []
    if p.public and children:
        problems.append(f"pool {p.name}: a public pool cannot have child pools")
    if p.public and p.shareable:
        problems.append(f"pool {p.name}: shareable: a public pool lends everything; leave shareable out")
    for resource, amount in p.guaranteed.items():
        if resource in p.max and amount > p.max[resource]:
            problems.append(f"pool {p.name}: guaranteed {resource} ({_show(resource, amount)}) is above max "
                            f"({_show(resource, p.max[resource])})")
    guaranteed = guarantee(p)
    for resource, amount in p.shareable.items():
        if amount > guaranteed.get(resource, 0):
            problems.append(f"pool {p.name}: shareable {resource} ({_show(resource, amount)}) is above guaranteed "
                            f"({_show(resource, guaranteed.get(resource, 0))})")
    if children:
        sums: dict[str, int] = {}
        for c in children:
            for resource, amount in guarantee(c).items():
                sums[resource] = sums.get(resource, 0) + amount
        for resource, total in sorted(sums.items()):
            if resource in p.guaranteed and total > p.guaranteed[resource]:
                problems.append(f"pool {p.name}: guaranteed {resource} ({_show(resource, p.guaranteed[resource])}) "
                                f"is below its child pools' guarantees ({_show(resource, total)}: "
                                f"{', '.join(c.name for c in children)})")
    return problems


def document_amounts(amounts: Mapping[str, int]) -> dict[str, str]:
    """Amounts as documents, the API and the audit trail write them: ``{"nvidia.com/gpu": "500m"}``."""
    return {r: format_quota_amount(r, v) for r, v in sorted(amounts.items())}


def to_document(config: QuotaConfig) -> QuotaDocument:
    """The document for a configuration, amounts written canonically. A configuration built in
    code (a pool named in a URL, say) that no document could hold raises :class:`QuotaConfigError`."""

    def pool_doc(p: Pool) -> PoolDocument:
        budget = BudgetDocument(per_day=p.budget.per_day, per_month=p.budget.per_month) if p.budget else None
        return PoolDocument(
            name=p.name, description=p.description, public=p.public, weight=p.weight, budget=budget,
            pools=[pool_doc(c) for c in config.children(p.name)],
            **{what: document_amounts(amounts) for what, amounts in p.limits()},
        )

    reclaim = ReclaimDocument(grace=format_duration(config.reclaim.grace_s),
                              min_loan=format_duration(config.reclaim.min_loan_s))
    try:
        return QuotaDocument(reclaim=reclaim, pools=[pool_doc(p) for p in config.children(None)])
    except ValidationError as exc:  # e.g. a name the document's rules refuse: the caller's 4xx, not a crash
        raise QuotaConfigError(validation_problems(exc)) from None


def document_to_data(doc: QuotaDocument) -> dict[str, Any]:
    """Plain data for YAML or JSON, leaving out fields at their defaults so files stay short."""
    return doc.model_dump(exclude_defaults=True, mode="json") | {"pools": [
        _pool_data(p) for p in doc.pools
    ]} | {"reclaim": doc.reclaim.model_dump(mode="json")}


def _pool_data(p: PoolDocument) -> dict[str, Any]:
    data = {"name": p.name, **p.model_dump(exclude_defaults=True, exclude={"name", "pools"}, mode="json")}
    if p.pools:
        data["pools"] = [_pool_data(c) for c in p.pools]
    return data


def config_from_yaml(text: str) -> QuotaConfig:
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise QuotaConfigError([f"not valid YAML: {exc}"]) from None
    return read_config(data)


def config_to_yaml(config: QuotaConfig) -> str:
    return yaml.safe_dump(document_to_data(to_document(config)), sort_keys=False, allow_unicode=True)

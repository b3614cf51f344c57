"""Configurations as the store writes them: re-checked when built in code, and compared with
the one before, pool by pool, for the audit trail."""

from __future__ import annotations

from typing import Any

from quota.config import (
    LIMIT_FIELDS,
    Budget,
    QuotaConfig,
    QuotaConfigError,
    compile_document,
    document_amounts,
    format_duration,
    to_document,
)


def pool_changes(old: QuotaConfig, new: QuotaConfig) -> list[tuple[str, str, dict[str, Any]]]:
    """(action, pool, detail) for every pool added, removed or changed, and reclaim settings."""
    before = {p.name: p for p in old.pools}
    after = {p.name: p for p in new.pools}
    out: list[tuple[str, str, dict[str, Any]]] = []
    for name, p in after.items():
        if name not in before:
            out.append(("pool.create", name, {"parent": p.parent}))
        elif before[name] != p:
            q = before[name]
            fields = {}
            for f in ("parent", "weight", "public", "description", "budget", *LIMIT_FIELDS):
                a, b = getattr(q, f), getattr(p, f)
                if a != b:
                    fields[f] = {"from": _show(f, a), "to": _show(f, b)}
            out.append(("pool.update", name, fields))
    out += [("pool.delete", name, {}) for name in before if name not in after]
    if old.reclaim != new.reclaim:
        out.append(("settings.update", "reclaim", {"grace": format_duration(new.reclaim.grace_s),
                                                   "min_loan": format_duration(new.reclaim.min_loan_s)}))
    return out


def _show(field: str, value: Any) -> Any:
    if field in LIMIT_FIELDS:
        return document_amounts(value)
    if isinstance(value, Budget):
        return {"per_day": value.per_day, "per_month": value.per_month}
    return value


def validated(config: QuotaConfig) -> QuotaConfig:
    """Re-check a configuration built in code (the same rules as for a document)."""
    names = {p.name for p in config.pools}
    problems = [f"pool {p.name}: parent {p.parent!r} does not exist" for p in config.pools
                if p.parent is not None and p.parent not in names]
    if problems:  # the document is written from the top-level pools down, so these would vanish
        raise QuotaConfigError(problems)
    compiled = compile_document(to_document(config))
    unreachable = sorted(names - {p.name for p in compiled.pools})
    if unreachable:
        raise QuotaConfigError([f"pool {name}: its parents form a cycle" for name in unreachable])
    return compiled

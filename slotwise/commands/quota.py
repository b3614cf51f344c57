"""``slotwise quota``: administer project pools on the database the service uses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.tree import Tree

from quota.database import DEFAULT_URL
from scheduler.model.resources import format_quota_amount
from slotwise.console import command_group, failure, make_console

# Each command imports what it needs when it runs: the store loads SQLAlchemy, the configuration
# pydantic and the usage numpy, none of which --help needs.
if TYPE_CHECKING:
    from quota.config import Pool, QuotaConfig
    from quota.store import Store
    from quota.usage import PoolUsage

app = command_group("Project resource pools: guaranteed, shareable and borrowed capacity.")
tokens = command_group("API tokens for the quota REST API.")
app.add_typer(tokens, name="token")
console = make_console()
ACTOR = "cli"

Db = Annotated[str, typer.Option("--db", envvar="SLOTWISE_DB", help="Database URL (sqlite:///file.db or postgresql://...).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts, in the shape the REST API returns.")]


@contextmanager
def _store(url: str) -> Iterator[Store]:
    """The store, migrated; refusals and database errors end the command with exit code 2."""
    from sqlalchemy.exc import SQLAlchemyError

    from quota.config import QuotaConfigError
    from quota.store import Store, StoreError

    store: Store | None = None
    try:
        store = Store(url)
        store.migrate()
        yield store
    except (QuotaConfigError, StoreError, OSError) as exc:
        raise failure(console, exc) from None
    except SQLAlchemyError as exc:
        console.print(f"[red]database error:[/red] {exc.__class__.__name__}: {str(exc).splitlines()[0]}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        if store is not None:
            store.close()


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _pool(config: QuotaConfig, name: str) -> Pool:
    """The pool named ``name``, or :class:`NotFound` naming the pools it may have meant."""
    from quota.store import NotFound

    try:
        return config.pool(name)
    except KeyError:
        close = get_close_matches(name, [p.name for p in config.pools], n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise NotFound(f"no pool {name!r}{hint}; to create it: slotwise quota set {name} --create ...") from None


def _amounts(amounts: dict[str, int]) -> str:
    return ", ".join(f"{r}={format_quota_amount(r, v)}" for r, v in sorted(amounts.items())) or "-"


def _pool_line(p: Pool) -> str:
    tags = " \\[public]" if p.public else ""
    parts = [f"{kind} {_amounts(dict(amounts))}" for kind, amounts in p.limits() if amounts]
    weight = f", weight {p.weight:g}" if p.weight != 1 else ""
    return f"[bold]{p.name}[/bold]{tags}: {'; '.join(parts) or 'no limits'}{weight}"


@app.command("list")
def list_pools(db: Db = DEFAULT_URL, json_: Json = False) -> None:
    """The pool tree with each pool's limits (--json: a list of pools, parents first, as GET /quota/pools)."""
    from slotwise.quota_views import pool_json

    with _store(db) as store:
        config = store.config()
    if json_:
        _print_json([pool_json(p) for p in config.pools])
        return
    if not config.pools:
        console.print("no pools yet: slotwise quota import pools.yaml, or slotwise quota set NAME --create ...")
        return
    root = Tree("cluster")

    def grow(branch: Tree, parent: str | None) -> None:
        for p in config.children(parent):
            grow(branch.add(_pool_line(p)), p.name)

    grow(root, None)
    console.print(root)


@app.command()
def show(name: str, db: Db = DEFAULT_URL, audit: Annotated[int, typer.Option(help="Recent audit entries to show.")] = 10,
         json_: Json = False) -> None:
    """One pool: limits, usage, loans and its recent audit trail (--json: {"pool", "children",
    "usage", "audit"}, each as the REST API returns it)."""
    from quota.usage import loans, pool_usage
    from slotwise.quota_views import audit_json, pool_json, usage_json

    with _store(db) as store:
        config = store.config()
        pool = _pool(config, name)
        ledger = store.ledger()
        entries = store.audit(audit, subject=name)
    if json_:
        _print_json({"pool": pool_json(pool), "children": [c.name for c in config.children(name)],
                     "usage": usage_json(ledger, {name}), "audit": audit_json(entries)})
        return
    console.print(_pool_line(pool), highlight=False)
    console.print(f"parent: {pool.parent or 'cluster'}; children: {', '.join(c.name for c in config.children(name)) or '-'}")
    if pool.budget:
        console.print(f"budget: {pool.budget.per_day or '-'} per day, {pool.budget.per_month or '-'} per month")
    credited = loans(ledger)
    console.print(_usage_table([r for r in pool_usage(ledger, credited) if r.pool == name], f"usage of {name}"))
    for loan in credited:
        if name in (loan.borrower, loan.lender):
            console.print(f"{loan.borrower} borrows {format_quota_amount(loan.resource, loan.amount)} {loan.resource} "
                          f"from {loan.lender}", highlight=False)
    for e in entries:
        console.print(f"{e.at:%Y-%m-%d %H:%M:%S} {e.actor} {e.action} {e.detail}", highlight=False)


def _merge(current: dict[str, int], given: dict[str, int], cleared: set[str]) -> dict[str, int]:
    return {r: v for r, v in {**current, **given}.items() if r not in cleared}


def _parse_pairs(name: str, kind: str, text: str | None, problems: list[str]) -> tuple[dict[str, int], set[str]]:
    """``cpu=64,nvidia.com/gpu=12``; ``cpu=`` clears cpu."""
    from quota.config import parse_amounts

    if text is None:
        return {}, set()
    pairs: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        resource, sep, quantity = part.partition("=")
        if not sep:
            problems.append(f"pool {name}: {kind}: expected resource=quantity, got {part!r}")
            continue
        pairs[resource.strip()] = quantity.strip()
    cleared = {r for r, q in pairs.items() if not q}
    return parse_amounts(name, kind, {r: q for r, q in pairs.items() if q}, problems), cleared


@app.command("set")
def set_pool(
    name: str,
    db: Db = DEFAULT_URL,
    parent: Annotated[str | None, typer.Option(help="Parent pool (with --create: default none, a top-level pool).")] = None,
    guaranteed: Annotated[str | None, typer.Option(help="cpu=64,memory=512Gi,nvidia.com/gpu=12 ('cpu=' clears).")] = None,
    max_: Annotated[str | None, typer.Option("--max", help="Hard caps, same form.")] = None,
    shareable: Annotated[str | None, typer.Option(help="How much of the guarantee may be lent, same form.")] = None,
    borrow_limit: Annotated[str | None, typer.Option(help="How far above the guarantee it may borrow, same form.")] = None,
    weight: Annotated[float | None, typer.Option(help="Weight for sharing idle capacity.")] = None,
    public: Annotated[bool | None, typer.Option("--public/--private", help="A public pool lends all it has.")] = None,
    description: Annotated[str | None, typer.Option(help="Free text.")] = None,
    create: Annotated[bool, typer.Option("--create", help="Create the pool; without it, a missing pool is an error.")] = False,
) -> None:
    """Change some fields of a pool, the others keeping their values; with --create, a new pool."""
    from quota.config import LIMIT_FIELDS, Pool, QuotaConfigError
    from quota.store import StoreError

    with _store(db) as store:
        config = store.config()
        # Explicit, so that a typo in a name is an error rather than a new pool.
        if create and name in {p.name for p in config.pools}:
            raise StoreError(f"pool {name} exists; to change it, leave out --create")
        existing = None if create else _pool(config, name)
        pool = existing or Pool(name)
        problems: list[str] = []
        updates: dict[str, object] = {}
        for kind, text in zip(LIMIT_FIELDS, (guaranteed, max_, shareable, borrow_limit)):
            given, cleared = _parse_pairs(name, kind, text, problems)
            if text is not None:
                updates[kind] = _merge(dict(getattr(pool, kind)), given, cleared)
        if problems:
            raise QuotaConfigError(problems)
        if weight is not None and weight <= 0:
            raise QuotaConfigError([f"pool {name}: weight must be above 0, got {weight:g}"])
        for field, value in (("parent", parent), ("weight", weight), ("public", public), ("description", description)):
            if value is not None:
                updates[field] = value
        changes = store.set_pool(replace(pool, **updates), ACTOR)  # type: ignore[arg-type]
    console.print(f"pool {name}: {'created' if existing is None else 'updated' if changes else 'unchanged'}")


@app.command()
def delete(name: str, db: Db = DEFAULT_URL) -> None:
    """Delete a pool without children or admitted workloads."""
    with _store(db) as store:
        store.delete_pool(name, ACTOR)
    console.print(f"pool {name}: deleted")


@app.command("import")
def import_(file: Annotated[Path, typer.Argument(help="YAML file (slotwise quota export writes one).")], db: Db = DEFAULT_URL) -> None:
    """Make a YAML file the whole configuration: pools not in it are removed. Importing what is
    already there changes nothing."""
    from quota.config import config_from_yaml

    with _store(db) as store:
        changes = store.replace_config(config_from_yaml(file.read_text()), ACTOR)
    for action, subject, detail in changes:
        console.print(f"{action} {subject} {detail or ''}", highlight=False)
    console.print(f"{len(changes)} change(s)" if changes else "no changes")


@app.command()
def export(db: Db = DEFAULT_URL, out: Annotated[Path | None, typer.Option(help="Write here instead of printing.")] = None) -> None:
    """The whole configuration as YAML, to keep in git."""
    from quota.config import config_to_yaml

    with _store(db) as store:
        text = config_to_yaml(store.config())
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        console.print(f"wrote {out}")


def _usage_table(rows: list[PoolUsage], title: str) -> Table:
    table = Table(title=title)
    for column in ("pool", "resource", "guaranteed", "used", "borrowed", "lent", "max", "workloads"):
        table.add_column(column, justify="left" if column in ("pool", "resource") else "right")
    for r in rows:
        amounts = [format_quota_amount(r.resource, v) for v in (r.guaranteed, r.used, r.borrowed, r.lent)]
        table.add_row(r.pool, r.resource, *amounts, "-" if r.max is None else format_quota_amount(r.resource, r.max),
                      str(r.workloads))
    return table


@app.command()
def usage(db: Db = DEFAULT_URL, json_: Json = False) -> None:
    """Who uses what, and who borrows from whom (--json: {"pools", "loans"}, as GET /quota/usage)."""
    from quota.usage import loans, pool_usage
    from slotwise.quota_views import usage_json

    with _store(db) as store:
        ledger = store.ledger()
    if json_:
        _print_json(usage_json(ledger))
        return
    credited = loans(ledger)
    console.print(_usage_table(pool_usage(ledger, credited), "quota usage"))
    for loan in credited:
        console.print(f"{loan.borrower} borrows {format_quota_amount(loan.resource, loan.amount)} {loan.resource} "
                      f"from {loan.lender}", highlight=False)


@app.command()
def audit(db: Db = DEFAULT_URL, limit: Annotated[int, typer.Option(help="How many entries, newest first.")] = 50,
          json_: Json = False) -> None:
    """The audit trail: configuration changes and admission decisions (--json: a list, as GET /quota/audit)."""
    from slotwise.quota_views import audit_json

    with _store(db) as store:
        entries = store.audit(limit)
    if json_:
        _print_json(audit_json(entries))
        return
    for e in entries:
        console.print(f"{e.at:%Y-%m-%d %H:%M:%S} {e.actor} {e.action} {e.subject} {e.detail}", highlight=False)


@tokens.command("create")
def token_create(
    name: str,
    db: Db = DEFAULT_URL,
    role: Annotated[str, typer.Option(help="admin (may change) or viewer (reads one pool's subtree).")] = "viewer",
    pool: Annotated[str | None, typer.Option(help="The pool a viewer reads.")] = None,
) -> None:
    """Create a token; it is printed once and only its digest is stored."""
    with _store(db) as store:
        token = store.create_token(name, role, pool, ACTOR)
    typer.echo(token)


@tokens.command("revoke")
def token_revoke(name: str, db: Db = DEFAULT_URL) -> None:
    with _store(db) as store:
        store.revoke_token(name, ACTOR)
    console.print(f"token {name}: revoked")

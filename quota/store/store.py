"""The quota store: configuration, admitted workloads, tokens and the audit trail in SQL.

SQLite (a file) is the embedded default; PostgreSQL is supported. Every change runs in one
transaction that first locks the single ``versions`` row (``SELECT ... FOR UPDATE`` on
PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite), so admissions from any number of processes
serialise and two of them can never both take the last unit of a pool. A refused or failed
change rolls back whole: nothing is half-written.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, inspect, select, text, update
from sqlalchemy.orm import Session

from quota.admission import Admit, QuotaDecision, Reclaim, Request, decide
from quota.config import LIMIT_FIELDS, Budget, Pool, QuotaConfig, ReclaimSettings
from quota.database import DEFAULT_URL
from quota.ledger import Ledger, Workload
from quota.store.changes import pool_changes, validated
from quota.store.engine import IDLE_IN_TRANSACTION_S, READ_ONLY, make_engine, stored_utc
from quota.store.errors import Fenced, NotFound, StoreError, refused_values
from quota.store.records import AuditEntry, Principal, Spend
from quota.store.schema import (
    AuditRow,
    BudgetRow,
    LayoutReportRow,
    LimitRow,
    PoolRow,
    SettingRow,
    SpendRow,
    TokenRow,
    VersionRow,
    WorkloadRow,
)
from scheduler.model.resources import Resources

#: The newest migration in quota/store/migrations/versions (a test holds them equal).
SCHEMA_REVISION = "0005"
ROLES = ("admin", "viewer")
#: Tokens chosen outside slotwise must be at least this long (``token_urlsafe(32)`` gives 43).
MIN_TOKEN_CHARS = 32


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    def __init__(self, url: str = DEFAULT_URL, capacity: Mapping[str, int] | None = None, *,
                 idle_in_transaction_s: float = IDLE_IN_TRANSACTION_S):
        """``capacity``: what the cluster holds in quota units (the live service and the simulator
        know it); without it the cluster holds exactly the top-level pools' guarantees.
        ``idle_in_transaction_s``: on PostgreSQL, how long a change may wait between two
        statements before the server ends its session (see ``IDLE_IN_TRANSACTION_S``)."""
        self.url = url
        self.capacity = capacity
        self.engine = make_engine(url, idle_in_transaction_s)
        # A read is one consistent snapshot (SQLite's WAL gives one; PostgreSQL needs REPEATABLE READ
        # for the several queries that build a ledger) and takes no lock.
        self._reader = self.engine.execution_options(
            **{READ_ONLY: True}, **({} if self.engine.dialect.name == "sqlite" else {"isolation_level": "REPEATABLE READ"}))
        # Held by this process's changes for their whole transaction: they change the cached ledger
        # in place. Readers never wait for it (Store.ledger).
        self._changing = threading.RLock()
        self._config: tuple[int, QuotaConfig, dict[str, int]] | None = None  # version, config, pool ids by name
        self._ledger: tuple[tuple[int, int, tuple[tuple[str, int], ...] | None], Ledger] | None = None
        self._epoch: int | None = None  # fenced: every change first checks that this epoch is still the newest
        self._batch = threading.local()  # .open: this thread's transaction of a batch (Store.batch)

    def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic). A schema already there costs one
        query: Alembic takes longer to import than a command such as ``quota list`` to run."""
        with self.engine.connect() as connection:
            if inspect(connection).has_table("alembic_version"):
                if connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [SCHEMA_REVISION]:
                    return
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", "quota.store:migrations")
        with self.engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _transaction(self) -> Iterator[tuple[Session, VersionRow]]:
        """A transaction holding the store's lock; cached state is dropped if it fails. Inside a
        batch, a savepoint of the batch's transaction."""
        opened = getattr(self._batch, "open", None)
        if opened is not None:
            try:
                with opened[0].begin_nested():
                    yield opened
            except BaseException:
                self._ledger = None
                raise
            return
        try:
            with self._changing, refused_values(), Session(self.engine, expire_on_commit=False) as session, \
                    session.begin():
                versions = session.scalars(select(VersionRow).where(VersionRow.id == 1).with_for_update()).one()
                if self._epoch is not None and versions.leader_epoch != self._epoch:
                    raise Fenced(f"epoch {self._epoch} is over: {versions.leader or 'another replica'} "
                                 f"leads with epoch {versions.leader_epoch}")
                yield session, versions
        except BaseException:
            self._ledger = None
            raise

    @contextmanager
    def batch(self) -> Iterator[None]:
        """This thread's changes inside the block as one transaction, committed at its end: one
        commit (and one fsync) for an admission cycle's decisions rather than one each. Each
        change is a savepoint, so one that fails leaves the others; if the whole fails (the
        database gone, a newer leader), none is kept. The store's lock is held throughout."""
        if getattr(self._batch, "open", None) is not None:
            yield
            return
        with self._transaction() as opened:
            self._batch.open = opened
            try:
                yield
            finally:
                self._batch.open = None

    # Leadership ---------------------------------------------------------------------------------
    def take_leadership(self, holder: str) -> int:
        """A new fencing epoch for ``holder``, which has just become leader: from now on the
        writes of a store fenced with an older epoch are refused."""
        with self._transaction() as (s, versions):
            versions.leader_epoch += 1
            versions.leader = holder
            self._audit(s, holder, "lead", "leader", {"epoch": versions.leader_epoch})
            return versions.leader_epoch

    def fenced(self, epoch: int) -> Store:
        """This store for a leader of ``epoch``: the same database, every transaction refused
        with :class:`Fenced` once a newer epoch is taken (the check runs under the store's lock,
        so no write of an old leader lands after a new one took over)."""
        view = Store.__new__(Store)
        view.__dict__.update(self.__dict__)
        view._config = view._ledger = None  # admissions change a cached ledger in place: never share one
        view._epoch = epoch
        view._batch = threading.local()
        return view

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with refused_values(), Session(self._reader) as session, session.begin():
            yield session

    # Audit ----------------------------------------------------------------------------------
    @staticmethod
    def _audit(session: Session, actor: str, action: str, subject: str, detail: Mapping[str, Any]) -> None:
        session.add(AuditRow(at=datetime.now(UTC), actor=actor, action=action, subject=subject,
                             detail=json.dumps(detail, sort_keys=True)))

    def record(self, actor: str, action: str, subject: str, detail: Mapping[str, Any]) -> None:
        """Append an audit entry for a decision taken outside the store (a placement, a gang
        giving up), so that the trail holds every decision, not only quota's."""
        self.record_all(actor, [(action, subject, detail)])

    def record_all(self, actor: str, entries: Iterable[tuple[str, str, Mapping[str, Any]]]) -> None:
        """Append ``(action, subject, detail)`` entries in one transaction: all or none."""
        with self._transaction() as (s, _):
            for action, subject, detail in entries:
                self._audit(s, actor, action, subject, detail)

    def audit(self, limit: int = 100, subject: str | None = None) -> list[AuditEntry]:
        """The newest entries first."""
        with self._read() as s:
            query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
            if subject is not None:
                query = query.where(AuditRow.subject == subject)
            return [AuditEntry(r.id, stored_utc(r.at), r.actor, r.action, r.subject, json.loads(r.detail))
                    for r in s.scalars(query)]

    # Configuration --------------------------------------------------------------------------
    def config(self) -> QuotaConfig:
        with self._read() as s:
            version = s.scalars(select(VersionRow.config).where(VersionRow.id == 1)).one()
            return self._load_config(s, version)

    def _load_config(self, s: Session, version: int) -> QuotaConfig:
        if self._config is not None and self._config[0] == version:
            return self._config[1]
        rows = s.scalars(select(PoolRow)).all()
        limits: dict[int, dict[str, dict[str, int]]] = {r.id: {f: {} for f in LIMIT_FIELDS} for r in rows}
        for lim in s.scalars(select(LimitRow)):
            limits[lim.pool_id][lim.kind][lim.resource] = lim.amount
        budgets = {b.pool_id: Budget(b.per_day, b.per_month) for b in s.scalars(select(BudgetRow))}
        settings = {r.key: r.value for r in s.scalars(select(SettingRow))}
        names = {r.id: r.name for r in rows}
        children: dict[int | None, list[PoolRow]] = {}
        for r in sorted(rows, key=lambda r: r.position):
            children.setdefault(r.parent_id, []).append(r)
        pools: list[Pool] = []

        def walk(parent: int | None) -> None:
            for r in children.get(parent, []):
                pools.append(Pool(r.name, names.get(r.parent_id) if r.parent_id else None, weight=r.weight,
                                  public=r.public, budget=budgets.get(r.id), description=r.description,
                                  **limits[r.id]))
                walk(r.id)

        walk(None)
        defaults = ReclaimSettings()
        reclaim = ReclaimSettings(float(settings.get("reclaim.grace_s", defaults.grace_s)),
                                  float(settings.get("reclaim.min_loan_s", defaults.min_loan_s)))
        config = QuotaConfig(tuple(pools), reclaim)
        self._config = (version, config, {r.name: r.id for r in rows})
        return config

    def replace_config(self, config: QuotaConfig, actor: str) -> list[tuple[str, str, dict[str, Any]]]:
        """Make ``config`` the configuration (an import). Returns the changes made, each also in
        the audit trail; importing the current configuration changes and records nothing."""
        return self._change(lambda _current: config, actor)

    def set_pool(self, pool: Pool, actor: str) -> list[tuple[str, str, dict[str, Any]]]:
        """Create or change one pool; its children stay as they are."""

        def edit(config: QuotaConfig) -> QuotaConfig:
            names = [p.name for p in config.pools]
            if pool.parent is not None and pool.parent not in names:
                raise StoreError(f"pool {pool.name}: parent {pool.parent!r} does not exist")
            if pool.name not in names:
                return replace(config, pools=(*config.pools, pool))
            parent = pool.parent
            while parent is not None:
                if parent == pool.name:
                    raise StoreError(f"pool {pool.name}: cannot move under its own descendant {pool.parent}")
                parent = config.pool(parent).parent
            return replace(config, pools=tuple(pool if p.name == pool.name else p for p in config.pools))

        return self._change(edit, actor)

    def delete_pool(self, name: str, actor: str) -> None:
        def edit(config: QuotaConfig) -> QuotaConfig:
            if name not in {p.name for p in config.pools}:
                raise NotFound(f"no pool {name!r}")
            if config.children(name):
                raise StoreError(f"pool {name} has child pools ({', '.join(c.name for c in config.children(name))}); "
                                 "delete or move them first")
            return replace(config, pools=tuple(p for p in config.pools if p.name != name))

        self._change(edit, actor)

    def _change(self, edit: Callable[[QuotaConfig], QuotaConfig], actor: str) -> list[tuple[str, str, dict[str, Any]]]:
        """Apply ``edit`` to the current configuration under the store's lock, so that two admins
        changing pools at once never overwrite each other's change."""
        with self._transaction() as (s, versions):
            old = self._load_config(s, versions.config)
            config = validated(edit(old))
            changes = pool_changes(old, config)
            if not changes:
                return []
            removed = {p.name for p in old.pools} - {p.name for p in config.pools}
            self._refuse_busy(s, removed)
            self._write_config(s, config)
            versions.config += 1
            for action, subject, detail in changes:
                self._audit(s, actor, action, subject, detail)
        return changes

    @staticmethod
    def _refuse_busy(s: Session, names: set[str]) -> None:
        if not names:
            return
        busy = s.execute(select(PoolRow.name, func.count(WorkloadRow.key)).join(WorkloadRow, WorkloadRow.pool_id == PoolRow.id)
                         .where(PoolRow.name.in_(names)).group_by(PoolRow.name)).all()
        if busy:
            raise StoreError("cannot remove pools with admitted workloads: "
                             + ", ".join(f"{name} ({n})" for name, n in sorted(busy)))

    @staticmethod
    def _write_config(s: Session, config: QuotaConfig) -> None:
        rows = {r.name: r for r in s.scalars(select(PoolRow))}
        s.execute(delete(LimitRow))
        s.execute(delete(BudgetRow))
        keep = {p.name for p in config.pools}
        removed = {rows[n].id for n in rows if n not in keep}
        # Unlink every child of a removed pool first, so that RESTRICT never fires: children that
        # stay move to their new parents below, and those that go are deleted with it.
        for row in rows.values():
            if row.parent_id in removed:
                row.parent_id = None
        s.flush()
        for name in [n for n in rows if n not in keep]:
            s.delete(rows.pop(name))
        s.flush()
        positions: dict[str | None, int] = {}
        for p in config.pools:  # parents come first, so their ids exist
            row = rows.get(p.name)
            if row is None:
                row = rows[p.name] = PoolRow(name=p.name)
                s.add(row)
            row.parent_id = rows[p.parent].id if p.parent else None
            row.position = positions[p.parent] = positions.get(p.parent, -1) + 1
            row.public, row.weight, row.description = p.public, p.weight, p.description
            s.flush()
            for kind, amounts in p.limits():
                s.add_all(LimitRow(pool_id=row.id, kind=kind, resource=r, amount=v) for r, v in amounts.items())
            if p.budget is not None:
                s.add(BudgetRow(pool_id=row.id, per_day=p.budget.per_day, per_month=p.budget.per_month))
        for key, value in (("reclaim.grace_s", config.reclaim.grace_s), ("reclaim.min_loan_s", config.reclaim.min_loan_s)):
            s.merge(SettingRow(key=key, value=repr(value)))

    # Admissions -----------------------------------------------------------------------------
    def _current_ledger(self, s: Session, versions: VersionRow) -> Ledger:
        """The cached ledger if it is of ``versions``, else one built and cached; holding ``_changing``."""
        key = self._ledger_key(versions)
        if self._ledger is not None and self._ledger[0] == key:
            return self._ledger[1]
        ledger = self._built_ledger(s, versions)
        self._ledger = (key, ledger)
        return ledger

    def _built_ledger(self, s: Session, versions: VersionRow) -> Ledger:
        ledger = Ledger(self._load_config(s, versions.config), self.capacity)
        names = {r.id: r.name for r in s.scalars(select(PoolRow))}
        for w in s.scalars(select(WorkloadRow)):
            ledger.add(Workload(w.key, names[w.pool_id], Resources(json.loads(w.charge)), w.priority, w.admitted_at),
                       force=True)
            if w.terminating:
                ledger.terminating.add(w.key)
        return ledger

    def _ledger_key(self, versions: VersionRow) -> tuple[int, int, tuple[tuple[str, int], ...] | None]:
        capacity = tuple(sorted(self.capacity.items())) if self.capacity is not None else None
        return versions.config, versions.ledger, capacity

    def ledger(self) -> Ledger:
        """The configuration with every admitted workload charged, as last committed (a copy to
        read). Takes no lock, so usage and metrics never wait for a change: while no change of
        this process works on the cached ledger, it is copied (or built from the read's snapshot
        and cached); while one does, the ledger is built from the snapshot."""
        with self._read() as s:
            versions = s.scalars(select(VersionRow).where(VersionRow.id == 1)).one()
            if not self._changing.acquire(blocking=False):
                return self._built_ledger(s, versions)
            try:
                return self._current_ledger(s, versions).copy()
            finally:
                self._changing.release()

    def admit(self, request: Request, now: float, actor: str) -> QuotaDecision:
        """Decide ``request`` and, when it is admitted (or reclaims), record it, in one locked
        transaction. Reclaim victims are marked terminating: they keep their charge while they get
        the grace period to stop, and are released (:meth:`release`) once gone; the requester is
        charged at once, so nobody else takes the capacity meanwhile."""
        with self._transaction() as (s, versions):
            ledger = self._current_ledger(s, versions)  # holds exactly the admitted rows: same versions
            if request.key in ledger.workloads:
                raise StoreError(f"workload {request.key} is already admitted")
            decision = decide(ledger, request, now)
            if isinstance(decision, Reclaim):
                for victim in decision.victims:
                    ledger.terminating.add(victim.key)
                    s.execute(update(WorkloadRow).where(WorkloadRow.key == victim.key).values(terminating=True))
                    self._audit(s, actor, "evict", victim.key, {"pool": victim.pool, "for": request.key,
                                                                "grace_s": ledger.config.reclaim.grace_s})
            if isinstance(decision, Admit | Reclaim):
                workload = request.charged(decision.gpu_model, now)
                ledger.add(workload, force=isinstance(decision, Reclaim))
                s.add(WorkloadRow(key=workload.key, pool_id=self._pool_id(s, versions, workload.pool), priority=workload.priority,
                                  admitted_at=now, gpu_model=decision.gpu_model,
                                  borrowed=isinstance(decision, Admit) and bool(decision.borrowed),
                                  charge=json.dumps(dict(workload.charge), sort_keys=True)))
                versions.ledger += 1
                self._ledger = (self._ledger_key(versions), ledger)
            if decision.kind != "wait":
                self._audit(s, actor, decision.kind, request.key, {"pool": request.pool, "reason": decision.reason})
        return decision

    def release(self, key: str, actor: str) -> Workload:
        """A workload finished or was removed: give its charge back."""
        with self._transaction() as (s, versions):
            row = s.get(WorkloadRow, key)
            if row is None:
                raise NotFound(f"no admitted workload {key!r}")
            ledger = self._current_ledger(s, versions)
            workload = ledger.remove(key)
            s.delete(row)
            versions.ledger += 1
            self._ledger = (self._ledger_key(versions), ledger)
            self._audit(s, actor, "release", key, {"pool": workload.pool})
        return workload

    def _pool_id(self, s: Session, versions: VersionRow, name: str) -> int:
        self._load_config(s, versions.config)  # cached: ids change only with the configuration
        assert self._config is not None
        return self._config[2][name]

    # Overflow spend ---------------------------------------------------------------------------
    def budget_left(self, pool: str, at: datetime) -> tuple[float, float] | None:
        """What ``pool`` may still reserve for overflow on the UTC day and month of ``at``, and the
        limit that leaves least: its budget less what bursts started then reserved (or, once
        ended, cost). None: the pool has no burst budget."""
        with self._read() as s:
            return self._budget_left(s, pool, at)

    def _budget_left(self, s: Session, pool: str, at: datetime) -> tuple[float, float] | None:
        row = s.execute(select(BudgetRow).join(PoolRow, PoolRow.id == BudgetRow.pool_id).where(PoolRow.name == pool)).scalar()
        if row is None or (row.per_day is None and row.per_month is None):
            return None
        day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        month = day.replace(day=1)
        next_month = (month + timedelta(days=32)).replace(day=1)
        tightest: tuple[float, float] | None = None
        for limit, since, until in ((row.per_day, day, day + timedelta(days=1)), (row.per_month, month, next_month)):
            if limit is not None:
                used = s.scalar(select(func.coalesce(func.sum(func.coalesce(SpendRow.spent, SpendRow.reserved)), 0.0))
                                .where(SpendRow.pool == pool, SpendRow.started_at >= since, SpendRow.started_at < until))
                left = max(limit - float(used), 0.0)
                if tightest is None or left < tightest[0]:
                    tightest = (left, limit)
        return tightest

    def reserve_spend(self, pool: str, workload: str, target: str, reserved: float, at: datetime, actor: str) -> None:
        """Reserve overflow spend, under the store's lock: refused if the budget would be passed."""
        with self._transaction() as (s, _):
            budget = self._budget_left(s, pool, at)
            if budget is None or reserved > budget[0] + 1e-9:
                raise StoreError(f"pool {pool}: overflow needs {reserved:.2f}, "
                                 + ("no burst budget is set" if budget is None else f"{budget[0]:.2f} of budget left"))
            if s.scalars(select(SpendRow.id).where(SpendRow.workload == workload, SpendRow.spent.is_(None))).first():
                raise StoreError(f"{workload} already has an open overflow reservation")
            # Stored in UTC: SQLite keeps the wall-clock time written and drops the zone.
            s.add(SpendRow(pool=pool, workload=workload, target=target, started_at=at.astimezone(UTC), reserved=reserved))
            self._audit(s, actor, "burst", workload, {"pool": pool, "target": target, "reserved": round(reserved, 6)})

    def open_spend(self) -> list[Spend]:
        """Reservations of bursts not settled yet, oldest first: what a restarted admitter still has to settle."""
        with self._read() as s:
            rows = s.scalars(select(SpendRow).where(SpendRow.spent.is_(None)).order_by(SpendRow.started_at, SpendRow.id))
            return [Spend(r.workload, r.pool, r.target, stored_utc(r.started_at), r.reserved) for r in rows]

    def settle_spend(self, workload: str, spent: float, actor: str) -> None:
        """A burst ended: record what it cost (never more than it reserved)."""
        with self._transaction() as (s, _):
            row = s.scalars(select(SpendRow).where(SpendRow.workload == workload, SpendRow.spent.is_(None))).first()
            if row is None:
                raise NotFound(f"no open overflow spend for {workload!r}")
            row.spent = min(spent, row.reserved)
            self._audit(s, actor, "burst.end", workload, {"pool": row.pool, "spent": round(row.spent, 6)})

    # MIG layout reports ---------------------------------------------------------------------
    def put_layout(self, node: str, report: str) -> bool:
        """Keep ``report`` (JSON) as ``node``'s latest; False if it is the one kept already (agents
        report every few seconds, mostly the same layout: those cost one read, no lock)."""
        if self.layout(node) == report:
            return False
        with self._transaction() as (s, _):
            version = (s.scalar(select(func.max(LayoutReportRow.version))) or 0) + 1
            s.merge(LayoutReportRow(node=node, report=report, version=version))
        return True

    def layout(self, node: str) -> str | None:
        """``node``'s latest report, if it has one."""
        with self._read() as s:
            return s.scalar(select(LayoutReportRow.report).where(LayoutReportRow.node == node))

    def layouts(self) -> list[tuple[str, str]]:
        """Every node's latest report, by node name."""
        with self._read() as s:
            return [(r.node, r.report) for r in s.scalars(select(LayoutReportRow).order_by(LayoutReportRow.node))]

    def layouts_version(self) -> int:
        """Changes whenever a kept report does."""
        with self._read() as s:
            return s.scalar(select(func.max(LayoutReportRow.version))) or 0

    # Tokens ---------------------------------------------------------------------------------
    def create_token(self, name: str, role: str, pool: str | None, actor: str) -> str:
        """A new API token (shown once; only its digest is kept)."""
        if role not in ROLES:
            raise StoreError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if (role == "viewer") != (pool is not None):
            raise StoreError("a viewer token names the pool it may read (--pool); an admin token names none")
        token = secrets.token_urlsafe(32)
        with self._transaction() as (s, _):
            if pool is not None and s.scalars(select(PoolRow.id).where(PoolRow.name == pool)).first() is None:
                raise NotFound(f"no pool {pool!r}")
            if s.scalars(select(TokenRow.id).where(TokenRow.name == name)).first() is not None:
                raise StoreError(f"a token named {name!r} exists")
            s.add(TokenRow(name=name, digest=_digest(token), role=role, pool=pool, created_at=datetime.now(UTC)))
            self._audit(s, actor, "token.create", name, {"role": role, "pool": pool})
        return token

    def keep_admin_token(self, name: str, token: str, actor: str) -> bool:
        """Make ``token``, chosen outside slotwise (a Kubernetes Secret), the admin token called
        ``name``, creating or replacing it; True when that changed anything."""
        if len(token) < MIN_TOKEN_CHARS:
            raise StoreError(f"token {name!r} has {len(token)} characters, fewer than {MIN_TOKEN_CHARS}: make one with "
                             "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")
        digest = _digest(token)
        with self._transaction() as (s, _):
            row = s.scalars(select(TokenRow).where(TokenRow.name == name)).first()
            if row is not None and (row.digest, row.role, row.pool) == (digest, "admin", None):
                return False
            other = s.scalars(select(TokenRow.name).where(TokenRow.digest == digest, TokenRow.name != name)).first()
            if other is not None:
                raise StoreError(f"token {name!r}: the same token is already in use as {other!r}")
            if row is None:
                s.add(TokenRow(name=name, digest=digest, role="admin", pool=None, created_at=datetime.now(UTC)))
            else:
                row.digest, row.role, row.pool, row.created_at = digest, "admin", None, datetime.now(UTC)
            self._audit(s, actor, "token.create" if row is None else "token.replace", name, {"role": "admin", "pool": None})
        return True

    def authenticate(self, token: str) -> Principal | None:
        with self._read() as s:
            row = s.scalars(select(TokenRow).where(TokenRow.digest == _digest(token))).first()
            return Principal(row.name, row.role, row.pool) if row else None

    def revoke_token(self, name: str, actor: str) -> None:
        with self._transaction() as (s, _):
            if s.execute(delete(TokenRow).where(TokenRow.name == name)).rowcount == 0:
                raise NotFound(f"no token {name!r}")
            self._audit(s, actor, "token.revoke", name, {})

"""The quota store on SQLite and PostgreSQL: schema, imports, refusals, admissions, audit, tokens."""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import replace

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import DBAPIError, IntegrityError

from quota.config import (
    Pool,
    QuotaConfig,
    QuotaConfigError,
    compile_document,
    config_from_yaml,
    config_to_yaml,
    parse_document,
)
from quota.ledger import Workload
from quota.store import SCHEMA_REVISION, Principal, Store, StoreError
from quota.store.schema import Base, TokenRow, VersionRow, WorkloadRow
from scheduler.model.resources import Resources
from tests.quota_fixtures import ACTOR, db_state, gpu_request, scenario

pytest_plugins = ["tests.quota_fixtures"]

TABLES = {"pools", "pool_limits", "budgets", "settings", "versions", "workloads", "audit", "tokens", "burst_spend"}


def versions(store: Store) -> tuple[int, int]:
    with store.engine.connect() as c:
        row = c.execute(select(VersionRow.config, VersionRow.ledger)).one()
    return tuple(row)


def workloads(store: Store) -> dict[str, tuple[bool, dict]]:
    with store.engine.connect() as c:
        rows = c.execute(select(WorkloadRow.key, WorkloadRow.borrowed, WorkloadRow.charge)).all()
    return {key: (borrowed, json.loads(charge)) for key, borrowed, charge in rows}


def test_the_schema_revision_the_store_checks_is_alembics_head():
    config = AlembicConfig()
    config.set_main_option("script_location", "quota.store:migrations")
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION


def test_an_older_schema_is_upgraded(database_url):
    """Only a current schema skips Alembic: one a revision behind is brought up to date."""
    store = Store(database_url)
    try:
        store.migrate()
        config = AlembicConfig()
        config.set_main_option("script_location", "quota.store:migrations")
        with store.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "-1")
        store.migrate()
        with store.engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() == SCHEMA_REVISION
        assert store.config() == QuotaConfig()
    finally:
        store.close()


def test_migrate_from_empty_is_idempotent(database_url):
    store = Store(database_url)
    try:
        store.migrate()
        assert TABLES <= set(inspect(store.engine).get_table_names())
        assert versions(store) == (0, 0)
        assert store.config() == QuotaConfig()
        store.migrate()  # a second run finds the schema current and changes nothing
        assert versions(store) == (0, 0) and store.audit() == []
    finally:
        store.close()


def test_migration_schema_matches_the_models(store):
    with store.engine.connect() as c:
        context = MigrationContext.configure(c, opts={"compare_type": True, "compare_server_default": False})
        diffs = [d for d in compare_metadata(context, Base.metadata)
                 if not (d[0] == "remove_table" and d[1].name == "alembic_version")]
    assert diffs == []


def test_import_export_import_is_a_no_op(store):
    changes = store.replace_config(scenario(), ACTOR)
    assert {(a, s) for a, s, _ in changes} >= {("pool.create", "nlp"), ("pool.create", "solo"), ("settings.update", "reclaim")}
    assert len(store.audit()) == len(changes)
    before, audit = versions(store), store.audit()

    exported = config_to_yaml(store.config())
    assert store.config() == scenario()
    assert store.replace_config(config_from_yaml(exported), ACTOR) == []
    assert versions(store) == before and store.audit() == audit
    assert config_to_yaml(store.config()) == exported


def test_update_records_field_changes(loaded):
    nlp = loaded.config().pool("nlp")
    changes = loaded.set_pool(replace(nlp, guaranteed={**nlp.guaranteed, "cpu": 8000}, weight=2.0), ACTOR)
    assert changes == [("pool.update", "nlp", {"guaranteed": {"from": {"cpu": "16", "nvidia.com/gpu": "4"},
                                                              "to": {"cpu": "8", "nvidia.com/gpu": "4"}},
                                               "weight": {"from": 1.0, "to": 2.0}})]
    assert loaded.config().pool("nlp").guaranteed["cpu"] == 8000
    assert loaded.audit(1)[0].detail == changes[0][2]


@pytest.mark.parametrize("change, message", [
    (lambda c: replace(c, pools=(*c.pools, Pool("solo"))), "used twice"),
    (lambda c: replace(c, pools=(*c.pools, Pool("orphan", parent="nowhere"))), "nowhere"),
    (lambda c: replace(c, pools=(*c.pools, Pool("x", parent="y"), Pool("y", parent="x"))), "cycle"),
    (lambda c: replace(c, pools=tuple(replace(p, shareable={"nvidia.com/gpu": 9000}) if p.name == "nlp" else p
                                      for p in c.pools)), "shareable"),
])
def test_invalid_config_is_refused_and_nothing_written(loaded, change, message):
    before = db_state(loaded)
    with pytest.raises((QuotaConfigError, KeyError, ValueError), match=message):
        loaded.replace_config(change(loaded.config()), ACTOR)
    assert db_state(loaded) == before


@pytest.mark.parametrize("remove", ["delete_pool", "import_without"])
def test_removing_a_pool_with_workloads_is_refused(loaded, remove):
    assert loaded.admit(gpu_request("job-1", "solo", 1), 10.0, ACTOR).kind == "admit"
    before = db_state(loaded)
    with pytest.raises(StoreError, match=r"admitted workloads: solo \(1\)"):
        if remove == "delete_pool":
            loaded.delete_pool("solo", ACTOR)
        else:
            config = loaded.config()
            loaded.replace_config(replace(config, pools=tuple(p for p in config.pools if p.name != "solo")), ACTOR)
    assert db_state(loaded) == before
    assert "solo" in {p.name for p in loaded.config().pools}


def test_delete_pool_with_children_is_refused(loaded):
    before = db_state(loaded)
    with pytest.raises(StoreError, match="child pools"):
        loaded.delete_pool("ai", ACTOR)
    assert db_state(loaded) == before


def test_admit_borrow_reclaim_release_are_recorded(loaded):
    s = loaded
    admitted = s.admit(gpu_request("nlp-a", "nlp", 4), 10.0, ACTOR)
    assert (admitted.kind, admitted.reason) == ("admit", "project nlp: within its guarantee")
    borrowed = s.admit(gpu_request("nlp-b", "nlp", 2), 20.0, ACTOR)
    assert borrowed.kind == "borrow"
    assert [(name, dict(a)) for name, a in borrowed.lenders] == [("vision", {"nvidia.com/gpu": 2000})]
    assert workloads(s) == {"nlp-a": (False, {"nvidia.com/gpu": 4000}), "nlp-b": (True, {"nvidia.com/gpu": 2000})}

    reclaimed = s.admit(gpu_request("vis-a", "vision", 4), 30.0, ACTOR)
    assert reclaimed.kind == "reclaim"
    assert [v.key for v in reclaimed.victims] == ["nlp-b"]  # the newest loan goes first
    assert set(workloads(s)) == {"nlp-a", "nlp-b", "vis-a"}  # the victim stays charged while it stops
    assert s.ledger().terminating == {"nlp-b"}
    assert s.admit(gpu_request("vis-c", "vision", 2), 35.0, ACTOR).kind == "wait"  # not reclaimed twice
    s.release("nlp-b", ACTOR)  # evicted: the admission loop gives its charge back

    waiting = s.admit(gpu_request("vis-b", "vision", 1), 40.0, ACTOR)
    assert waiting.kind == "wait" and "project vision: needs 1 GPU" in waiting.reason
    assert s.admit(gpu_request("x", "spare", 1), 50.0, ACTOR).kind == "deny"

    released = s.release("nlp-a", ACTOR)
    assert (released.key, released.pool) == ("nlp-a", "nlp")
    assert set(workloads(s)) == {"vis-a"}
    with pytest.raises(StoreError, match="no admitted workload"):
        s.release("nlp-a", ACTOR)

    decisions = {"admit", "borrow", "evict", "reclaim", "wait", "deny", "release"}
    trail = [(e.action, e.subject, e.detail["pool"]) for e in reversed(s.audit()) if e.action in decisions]
    assert trail == [("admit", "nlp-a", "nlp"), ("borrow", "nlp-b", "nlp"), ("evict", "nlp-b", "nlp"),
                     ("reclaim", "vis-a", "vision"), ("release", "nlp-b", "nlp"), ("deny", "x", "spare"),
                     ("release", "nlp-a", "nlp")]
    by_subject = {e.subject: e for e in reversed(s.audit()) if e.action in ("admit", "borrow", "reclaim", "deny", "evict")}
    assert by_subject["nlp-b"].detail == {"pool": "nlp", "for": "vis-a", "grace_s": 30.0}  # the evict, newest
    assert by_subject["vis-a"].detail["reason"] == reclaimed.reason
    assert "vis-b" not in by_subject  # a wait is not recorded
    assert {e.actor for e in s.audit()} == {ACTOR}
    assert s.ledger().usage.sum() > 0


@pytest.mark.parametrize("statement", ["UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"])
def test_audit_rows_cannot_be_changed(loaded, statement):
    before = db_state(loaded)
    with pytest.raises(DBAPIError, match="append-only"), loaded.engine.begin() as c:
        c.execute(text(statement))
    assert db_state(loaded) == before


def test_duplicate_admission_changes_nothing(loaded):
    loaded.admit(gpu_request("job", "nlp", 1), 1.0, ACTOR)
    before = db_state(loaded)
    with pytest.raises(StoreError, match="already admitted"):
        loaded.admit(gpu_request("job", "vision", 1), 2.0, ACTOR)
    assert db_state(loaded) == before


def test_failed_write_rolls_back_and_the_cache_with_it(loaded, monkeypatch):
    """An IntegrityError at commit (an audit row without an actor) undoes the workload row and the
    version bump, and the store's cached ledger does not keep the phantom charge."""
    before = db_state(loaded)
    audit = Store._audit
    monkeypatch.setattr(Store, "_audit", staticmethod(lambda s, actor, *rest: audit(s, None, *rest)))
    with pytest.raises(IntegrityError):
        loaded.admit(gpu_request("job", "solo", 1), 1.0, ACTOR)
    monkeypatch.undo()
    assert db_state(loaded) == before
    assert loaded.admit(gpu_request("job", "solo", 1), 2.0, ACTOR).kind == "admit"  # the unit is still free


def test_tokens_are_stored_as_digests_and_revocable(loaded):
    admin = loaded.create_token("ops", "admin", None, ACTOR)
    viewer = loaded.create_token("nlp-team", "viewer", "ai", ACTOR)
    assert loaded.authenticate(admin) == Principal("ops", "admin", None)
    assert loaded.authenticate(viewer) == Principal("nlp-team", "viewer", "ai")
    assert loaded.authenticate(admin + "x") is None
    with loaded.engine.connect() as c:
        stored = c.execute(select(TokenRow.digest)).scalars().all()
    dump = repr(db_state(loaded))
    assert len(stored) == 2 and all(len(d) == 64 for d in stored)
    assert admin not in dump and viewer not in dump

    loaded.revoke_token("ops", ACTOR)
    assert loaded.authenticate(admin) is None
    assert [(e.action, e.subject) for e in loaded.audit(3)] == [("token.revoke", "ops"), ("token.create", "nlp-team"),
                                                                 ("token.create", "ops")]


BAD_TOKENS = [
    (("x", "root", None), "role must be"),
    (("x", "viewer", None), "names the pool"),
    (("x", "admin", "ai"), "names the pool"),
    (("x", "viewer", "nowhere"), "no pool"),
    (("ops", "admin", None), "exists"),
]


def test_bad_tokens_are_refused(loaded):
    loaded.create_token("ops", "admin", None, ACTOR)
    before = db_state(loaded)
    for args, message in BAD_TOKENS:
        with pytest.raises(StoreError, match=message):
            loaded.create_token(*args, ACTOR)
    assert db_state(loaded) == before


def test_a_second_store_sees_the_first_ones_changes(loaded, database_url):
    other = Store(database_url)
    try:
        assert other.config() == loaded.config()
        assert other.admit(gpu_request("a", "solo", 1), 1.0, ACTOR).kind == "admit"
        assert loaded.admit(gpu_request("b", "solo", 1), 2.0, ACTOR).kind == "wait"  # its cached ledger was stale

        loaded.set_pool(replace(loaded.config().pool("solo"), guaranteed={"nvidia.com/gpu": 2000}), ACTOR)
        assert other.config().pool("solo").guaranteed == {"nvidia.com/gpu": 2000}
        assert other.admit(gpu_request("b", "solo", 1), 3.0, ACTOR).kind == "admit"

        loaded.release("a", ACTOR)
        assert set(other.ledger().workloads) == {"b"}
    finally:
        other.close()


class _RolledBack(Exception):
    pass


@pytest.mark.parametrize("read", ["config", "ledger"])
def test_reads_do_not_wait_for_a_change_in_progress_nor_see_it(loaded, read):
    """Token checks, scrapes, usage and the webhooks read while admissions write: a read takes no
    lock (on SQLite it sees WAL's last committed state, on PostgreSQL its snapshot) and never sees
    a change in progress, though this process's change works on the cached ledger in place."""
    loaded.ledger()  # cached
    writing, done = threading.Event(), threading.Event()

    def change() -> None:
        with contextlib.suppress(_RolledBack), loaded._transaction() as (s, versions):
            loaded._current_ledger(s, versions).add(Workload("nlp/uncommitted", "nlp", Resources({"nvidia.com/gpu": 1000})))
            writing.set()
            done.wait(30)
            raise _RolledBack

    writer = threading.Thread(target=change)
    writer.start()
    try:
        assert writing.wait(10)
        loaded._config = None  # make the read go to the database
        seen: list[object] = []
        reader = threading.Thread(target=lambda: seen.append(getattr(loaded, read)()))
        reader.start()
        reader.join(10)
        assert not reader.is_alive(), "the read waited for the change"
        if read == "ledger":
            assert "nlp/uncommitted" not in seen[0].workloads
    finally:
        done.set()
        writer.join()
    assert "nlp/uncommitted" not in loaded.ledger().workloads  # rolled back, the cache with it


NAMES = ["a", "b", "c", "d", "e", "f", "g"]


@st.composite
def pool_trees(draw) -> QuotaConfig:
    """A valid configuration over a few of a handful of names, in a random forest (each pool's
    parent is any pool drawn before it), so that two of them share names in other places: pools
    move, parents go while their children stay, children go while their parents stay."""
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=len(NAMES)))
    parent = {n: draw(st.none() | st.sampled_from(names[:i])) if i else None for i, n in enumerate(names)}

    def document(name: str) -> tuple[dict, int]:
        """The pool's document and its effective GPU guarantee."""
        built = [document(c) for c in names if parent[c] == name]
        below = sum(g for _, g in built)
        public = not built and draw(st.integers(0, 4)) == 0
        doc: dict = {"name": name, "weight": draw(st.sampled_from([0.5, 1.0, 2.0])),
                     "description": draw(st.sampled_from(["", "team " + name])), "public": public}
        if draw(st.booleans()) or not built:  # else the children's sum is derived
            doc["guaranteed"] = {"nvidia.com/gpu": below + draw(st.integers(0, 4))}
        guaranteed = doc.get("guaranteed", {}).get("nvidia.com/gpu", below)
        if not public and guaranteed:
            doc["shareable"] = {"nvidia.com/gpu": draw(st.integers(0, guaranteed))}
        if draw(st.booleans()):
            doc["budget"] = {"per_day": draw(st.sampled_from([None, 10.0])), "per_month": 100.0}
        if built:
            doc["pools"] = [d for d, _ in built]
        return doc, guaranteed

    reclaim = {"grace": draw(st.sampled_from(["30s", "5m"])), "min_loan": draw(st.sampled_from(["0s", "10m"]))}
    return compile_document(parse_document({"reclaim": reclaim, "pools": [document(n)[0] for n in names
                                                                          if parent[n] is None]}))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=pool_trees(), second=pool_trees())
def test_any_valid_configuration_imports_over_any_other(store, first, second):
    """The store is shared by the examples: each starts from whatever the one before left."""
    store.replace_config(first, ACTOR)
    assert store.config() == first
    trail = store.audit(10**6)
    store.replace_config(second, ACTOR)
    assert store.config() == second
    assert config_to_yaml(store.config()) == config_to_yaml(second)
    after = store.audit(10**6)  # newest first: what was there is still its tail
    assert after[len(after) - len(trail):] == trail


def test_a_batch_commits_its_changes_together_and_one_failing_leaves_the_others(loaded):
    """An admission cycle's decisions in one transaction: readers of the committed state see none
    of them until the batch ends; a change that fails inside is undone alone."""
    with loaded.batch():
        assert loaded.admit(gpu_request("nlp-a", "nlp", 2), 10.0, ACTOR).kind == "admit"
        with pytest.raises(StoreError, match="already admitted"):
            loaded.admit(gpu_request("nlp-a", "nlp", 2), 11.0, ACTOR)
        loaded.record(ACTOR, "place", "nlp-a", {"node": "n1"})
        assert loaded.admit(gpu_request("nlp-b", "nlp", 1), 12.0, ACTOR).kind == "admit"
        committed = threading.Thread(target=lambda: seen.extend(w.key for w in loaded.ledger().charged()))
        seen: list[str] = []
        committed.start()
        committed.join()
        assert seen == []  # another thread reads the last commit
    assert sorted(w.key for w in loaded.ledger().charged()) == ["nlp-a", "nlp-b"]
    assert [e.action for e in loaded.audit()][:3] == ["admit", "place", "admit"]


def test_a_change_paused_inside_its_transaction_loses_its_session_and_lock_on_postgresql(database_url):
    """A leader paused mid-cycle holds the row lock a new leader needs for its epoch: PostgreSQL
    ends the paused session once it has been idle that long, the new leader goes on, and the
    paused change is not kept."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite: a writer holds the file's lock, and another waits for it at most busy_timeout")
    paused = Store(database_url, idle_in_transaction_s=1.0)
    paused.migrate()
    paused.replace_config(scenario(), ACTOR)
    other = Store(database_url)
    taken: list[int] = []
    with pytest.raises(DBAPIError, match="idle-in-transaction timeout"), paused.batch():
        paused.admit(gpu_request("nlp-a", "nlp", 2), 10.0, ACTOR)
        new_leader = threading.Thread(target=lambda: taken.append(other.take_leadership("replica-1")))
        new_leader.start()
        new_leader.join(30)
        assert taken == [1], "the new leader still waits for the paused change's lock"
    assert "nlp-a" not in other.ledger().workloads
    assert "nlp-a" not in paused.ledger().workloads  # the paused store goes on, on a new session
    paused.close()
    other.close()


def test_a_batch_that_fails_keeps_nothing(loaded):
    before = db_state(loaded)
    with pytest.raises(RuntimeError, match="cycle failed"), loaded.batch():
        assert loaded.admit(gpu_request("nlp-a", "nlp", 2), 10.0, ACTOR).kind == "admit"
        loaded.record(ACTOR, "place", "nlp-a", {"node": "n1"})
        raise RuntimeError("cycle failed")
    assert db_state(loaded) == before
    assert list(loaded.ledger().charged()) == []

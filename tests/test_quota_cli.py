"""``slotwise quota`` on a SQLite file, through typer's CliRunner."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from typer.testing import CliRunner

from quota.config import config_from_yaml, config_to_yaml
from quota.store import Store
from slotwise.cli import app
from tests.quota_fixtures import EXAMPLE_POOLS, SCENARIO, db_state, gpu_request, without_research

runner = CliRunner()


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def quota(db: str, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, ["quota", *args, "--db", db])
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture
def imported(db, tmp_path) -> str:
    (tmp_path / "pools.yaml").write_text(SCENARIO)
    out = quota(db, "import", str(tmp_path / "pools.yaml"))
    assert "pool.create nlp {'parent': 'ai'}" in out and "6 change(s)" in out
    return db


def test_import_twice_changes_nothing_the_second_time(imported, tmp_path):
    assert quota(imported, "import", str(tmp_path / "pools.yaml")).strip() == "no changes"


def test_import_moves_the_children_of_a_removed_pool(db, tmp_path):
    quota(db, "import", str(EXAMPLE_POOLS))
    (tmp_path / "moved.yaml").write_text(without_research())
    out = quota(db, "import", str(tmp_path / "moved.yaml"))
    assert "pool.delete research" in out and "3 change(s)" in out
    config = Store(db).config()
    assert [(p.name, p.parent) for p in config.pools][:2] == [("nlp", None), ("vision", None)]
    assert quota(db, "export") == config_to_yaml(config_from_yaml(without_research()))


def test_list_shows_the_tree(imported):
    out = quota(imported, "list")
    for line in ("cluster", "ai: no limits", "nlp: guaranteed cpu=16, nvidia.com/gpu=4; shareable nvidia.com/gpu=2",
                 "spare [public]"):
        assert line in out


def test_set_creates_updates_and_clears(imported):
    assert "pool speech: created" in quota(imported, "set", "speech", "--create", "--parent", "ai",
                                           "--guaranteed", "cpu=2,memory=4Gi")
    assert "pool speech: updated" in quota(imported, "set", "speech", "--guaranteed", "cpu=", "--weight", "2")
    assert "pool speech: unchanged" in quota(imported, "set", "speech", "--weight", "2")
    speech = Store(imported).config().pool("speech")
    assert (speech.parent, dict(speech.guaranteed), speech.weight) == ("ai", {"memory": 4 * 2**30}, 2.0)


@pytest.mark.parametrize("args, words", [
    (["set", "nlp", "--guaranteed", "cpu=lots"], ["pool nlp", "guaranteed", "cpu"]),
    (["set", "nlp", "--max", "gpu=1"], ["pool nlp", "max", "unknown resource 'gpu'"]),
    (["set", "nlp", "--guaranteed", "cpu"], ["expected resource=quantity"]),
    (["set", "nlp", "--weight", "0"], ["weight"]),
    (["set", "nlp", "--shareable", "nvidia.com/gpu=9"], ["shareable"]),
    (["set", "ai", "--parent", "nlp"], ["descendant"]),
    (["delete", "ai"], ["child pools"]),
    # A typo made a new pool: creating one takes --create.
    (["set", "ghost", "--weight", "2"], ["no pool 'ghost';", "slotwise quota set ghost --create"]),
    (["set", "nlpp", "--weight", "2"], ["no pool 'nlpp' (did you mean nlp?)", "--create"]),
    (["set", "nlp", "--create", "--weight", "2"], ["pool nlp exists", "leave out --create"]),
    (["show", "visoin"], ["no pool 'visoin' (did you mean vision?)"]),
    (["delete", "nowhere"], ["no pool 'nowhere'"]),
])
def test_invalid_commands_exit_2_and_change_nothing(imported, args, words):
    before = db_state(Store(imported))
    out = " ".join(quota(imported, *args, code=2).split())  # rich wraps long lines
    assert out.startswith("error: ") and all(w in out for w in words), out
    assert db_state(Store(imported)) == before


def test_export_round_trip_is_the_canonical_form(imported, tmp_path):
    exported = quota(imported, "export")
    assert exported == config_to_yaml(config_from_yaml(SCENARIO))
    quota(imported, "export", "--out", str(tmp_path / "out.yaml"))
    assert (tmp_path / "out.yaml").read_text() == exported
    assert quota(imported, "import", str(tmp_path / "out.yaml")).strip() == "no changes"


def test_usage_token_and_delete(imported):
    store = Store(imported)
    assert store.admit(gpu_request("job", "nlp", 5), 1.0, "test").kind == "borrow"
    out = quota(imported, "usage")
    assert "quota usage" in out and "nlp borrows 1 nvidia.com/gpu from vision" in out

    token = quota(imported, "token", "create", "team", "--pool", "nlp").strip()
    assert store.authenticate(token).name == "team"
    assert "token team: revoked" in quota(imported, "token", "revoke", "team")
    assert store.authenticate(token) is None

    assert "pool solo: deleted" in quota(imported, "delete", "solo")
    assert "solo" not in {p.name for p in store.config().pools}
    assert "admitted workloads: nlp (1)" in quota(imported, "delete", "nlp", code=2)
    audit = quota(imported, "audit", "--limit", "3")
    assert "pool.delete solo" in audit and "token.revoke team" in audit


def json_of(db: str, *args: str):
    return json.loads(quota(db, *args, "--json"))


def test_json_output_is_the_rest_apis_shape(imported):
    store = Store(imported)
    assert store.admit(gpu_request("job", "nlp", 5), 1.0, "test").kind == "borrow"
    pools = json_of(imported, "list")
    assert [p["name"] for p in pools] == ["ai", "nlp", "vision", "solo", "spare"]
    assert pools[1] == {"name": "nlp", "parent": "ai", "description": "language models", "public": False, "weight": 1.0,
                        "guaranteed": {"cpu": "16", "nvidia.com/gpu": "4"}, "max": {},
                        "shareable": {"nvidia.com/gpu": "2"}, "borrow_limit": {}, "budget": None}

    usage = json_of(imported, "usage")
    assert usage["loans"] == [{"borrower": "nlp", "lender": "vision", "resource": "nvidia.com/gpu", "amount": "1"}]
    gpus = {r["pool"]: r for r in usage["pools"] if r["resource"] == "nvidia.com/gpu"}
    assert (gpus["nlp"]["used"], gpus["nlp"]["borrowed"], gpus["vision"]["lent"]) == ("5", "1", "1")

    shown = json_of(imported, "show", "nlp", "--audit", "2")
    assert shown["pool"] == pools[1] and shown["children"] == []
    assert shown["usage"]["loans"] == usage["loans"]
    assert {r["pool"] for r in shown["usage"]["pools"]} == {"nlp"}
    assert [(e["action"], e["subject"]) for e in shown["audit"]] == [("pool.create", "nlp")]  # borrow's subject is the job

    audit = json_of(imported, "audit", "--limit", "2")
    assert [(e["action"], e["subject"], e["actor"]) for e in audit] == [("borrow", "job", "test"),
                                                                        ("settings.update", "reclaim", "cli")]
    assert audit[0]["detail"]["pool"] == "nlp" and audit[0]["id"] > audit[1]["id"]
    assert datetime.fromisoformat(audit[0]["at"]).tzinfo is not None

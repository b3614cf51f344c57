"""``slotwise quota`` on a SQLite file, through typer's CliRunner."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from quota.config import config_from_yaml, config_to_yaml
from quota.store import Store
from scheduler.cli import app
from tests.quota_fixtures import SCENARIO, db_state, gpu_request

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


def test_list_shows_the_tree(imported):
    out = quota(imported, "list")
    for line in ("cluster", "ai: no limits", "nlp: guaranteed cpu=16, nvidia.com/gpu=4; shareable nvidia.com/gpu=2",
                 "spare [public]"):
        assert line in out


def test_set_creates_updates_and_clears(imported):
    assert "pool speech: created" in quota(imported, "set", "speech", "--parent", "ai", "--guaranteed", "cpu=2,memory=4Gi")
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

"""A database URL slotwise cannot use is one line naming it (its password hidden), exit 2, from
every command that opens the store."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from quota.store import Store, StoreError
from slotwise.cli import app


@pytest.mark.parametrize("url, message", [
    ("bogus://x", "the database URL 'bogus://x' names a database slotwise cannot use"),
    ("mysql://u:secret@db/quota", "'mysql://u:***@db/quota'"),
    ("not a url", "the database URL is not a URL"),
])
def test_an_unusable_database_url_is_a_store_error(url, message):
    with pytest.raises(StoreError, match="give sqlite:///FILE or postgresql://") as refused:
        Store(url)
    assert message in str(refused.value) and "secret" not in str(refused.value)


def test_quota_commands_name_a_bad_database_url_in_one_line():
    result = CliRunner().invoke(app, ["quota", "list"], env={"SLOTWISE_DB": "bogus://x"})
    assert result.exit_code == 2  # typer.Exit: no traceback
    assert "'bogus://x' names a database slotwise cannot use" in " ".join(result.output.split())


def test_serve_names_an_unreachable_database_in_one_line():
    result = subprocess.run([sys.executable, "-m", "slotwise.cli", "serve", "--db", "postgresql://u:p@127.0.0.1:9/x"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "database error: OperationalError" in result.stdout and "Traceback" not in result.stdout + result.stderr

"""``slotwise --help`` and every group's and command's help load none of the heavy libraries:
each command imports what it needs when it runs (timings: ``python3 benchmarks/cli.py``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("numpy", "sqlalchemy", "alembic", "ortools", "matplotlib", "networkx", "pandas", "kubernetes", "fastapi",
         "uvicorn", "ray", "rich.markdown")

LOADED = """
import json, sys
from slotwise.cli import app
try:
    app(sys.argv[1:], prog_name="slotwise")
except SystemExit:
    pass
print(json.dumps(sorted(m for m in HEAVY if m in sys.modules)))
"""


@pytest.mark.parametrize("args", [["--help"], ["quota", "--help"], ["quota", "list", "--help"], ["mig", "plan", "--help"],
                                  ["burst", "--help"], ["simulate", "--help"], ["place", "--help"], ["serve", "--help"]],
                         ids=" ".join)
def test_help_loads_no_heavy_library(args):
    result = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}" + LOADED, *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    *help_text, loaded = result.stdout.splitlines()
    assert "Usage: slotwise" in "\n".join(help_text)
    assert json.loads(loaded) == []

"""The layering of the README's architecture section, enforced by import-linter (contracts in
pyproject.toml): packages form one line, scheduler <- mig, quota <- burst <- simulator <-
slotwise, modules within them are layered, adapters live in slotwise, and policy code imports
no web framework, database or Kubernetes client."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("slotwise", "scheduler", "quota", "mig", "burst", "simulator")


#: import-linter through this interpreter: its ``lint-imports`` script need not be on PATH (a
#: virtual environment's Python run by its path).
LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # The tree's own packages, not the installed (editable) ones: PYTHONPATH comes first.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([sys.executable, "-c", LINT], cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, arrow_back", [
    ("scheduler/model/cluster.py", "import quota.config"),  # the floor reaching up a level
    ("quota/ledger.py", "import mig.catalog"),  # between the two packages of one level
    ("simulator/fill.py", "import slotwise.console"),  # the simulator reaching the product
    ("burst/patch.py", "import typer"),  # an adapter's framework below slotwise
])
def test_an_arrow_back_between_packages_breaks_a_contract(tmp_path, module, arrow_back):
    """A copy of the tree with one import added against the line must fail the linter."""
    for name in (*PACKAGES, "pyproject.toml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    broken = tmp_path / module
    broken.write_text(broken.read_text() + f"\n{arrow_back}  # against the layers\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and module.removesuffix(".py").replace("/", ".") in result.stdout

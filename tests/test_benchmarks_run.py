"""Every benchmark starts as the README shows it (``python3 benchmarks/NAME.py``): run as a script,
its folder comes first on the path, so a file named like one of slotwise's packages would hide it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted((ROOT / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", BENCHMARKS, ids=[s.stem for s in BENCHMARKS])
def test_benchmark_starts_as_a_script(script: Path):
    result = subprocess.run([sys.executable, f"benchmarks/{script.name}", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower()

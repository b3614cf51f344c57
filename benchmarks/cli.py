"""Command start-up: how long ``slotwise`` takes to answer --help and ``quota list``.

Each command runs ``--repeats`` times as a new process through the installed ``slotwise`` script
(the one beside this Python), on a SQLite file holding docs/examples/pools.yaml; prints the
median and the slowest run.

    python3 benchmarks/cli.py
    python3 benchmarks/cli.py --repeats 21

Target (issue 15): every --help and ``quota list`` under 0.5 s on the 2-core machines.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
COMMANDS = ("--help", "quota --help", "quota list --help", "simulate --help", "place --help", "mig plan --help",
            "serve --help", "quota list")


def _slotwise() -> str:
    beside = Path(sys.executable).parent / "slotwise"
    found = str(beside) if beside.exists() else shutil.which("slotwise")
    if found is None:
        raise typer.BadParameter("slotwise is not installed: python3 -m pip install -e .")
    return found


def main(repeats: Annotated[int, typer.Option(min=1, help="Runs of each command.")] = 11) -> None:
    slotwise = _slotwise()
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "SLOTWISE_DB": f"sqlite:///{folder}/slotwise.db"}
        subprocess.run([slotwise, "quota", "import", str(EXAMPLES / "pools.yaml")], env=env, check=True,
                       capture_output=True)
        print(f"{slotwise}, {repeats} runs each, {os.cpu_count()} cores")
        print(f"{'command':<22} {'median':>8} {'slowest':>8}")
        for command in COMMANDS:
            seconds = []
            for _ in range(repeats):
                started = time.perf_counter()
                subprocess.run([slotwise, *command.split()], env=env, check=True, capture_output=True)
                seconds.append(time.perf_counter() - started)
            print(f"{command:<22} {statistics.median(seconds):>7.3f}s {max(seconds):>7.3f}s")


if __name__ == "__main__":
    typer.run(main)

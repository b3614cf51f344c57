"""Every ``slotwise`` command that README.md and docs/*.md show in a ```bash block runs and exits 0.

Commands run in document order, one file after another, each file in its own temporary working
directory (with ``docs/`` and ``tests/recorded/`` linked in, and ``../shared`` when it exists) and
its own SQLite database in ``SLOTWISE_DB``, so state such as an imported quota carries over within
a file. They run in this process through the CLI: a process per command would cost seconds each.
What cannot run here is listed in SKIPPED with the reason; long runs are shortened by the exact
replacements in SHORTER; commands on the openb traces are listed in NEEDS_TRACES.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slotwise.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TRACES = ROOT.parent / "shared" / "traces" / "openb"

SKIPPED = {
    "slotwise serve": "serves until stopped (the service is tested over HTTP in tests/test_server_*.py)",
    "slotwise serve --nodes tests/recorded/nodes.json --pods tests/recorded/pods.json --managed nlp":
        "serves until stopped (the service is tested over HTTP in tests/test_server_*.py)",
    'slotwise mig agent --node "$NODE_NAME" --control-plane https://slotwise.example --token-file token':
        "needs NVML on a GPU node and a control plane (tests/test_mig_agent.py fakes both)",
    'slotwise mig agent --node "$NODE_NAME" --control-plane https://slotwise.example --token-file /var/run/slotwise/token':
        "needs NVML on a GPU node and a control plane (tests/test_mig_agent.py fakes both)",
}

# Simulations as documented take minutes here: the same command on a smaller workload.
SHORTER = {
    "slotwise simulate": "slotwise simulate --count 200",
    "slotwise simulate --policy default,fgd,bestfit --seeds 1..5":
        "slotwise simulate --policy default,fgd,bestfit --seeds 1..2 --count 150",
    "slotwise simulate --add-nodes A100-SXM4-80GB=8": "slotwise simulate --add-nodes A100-SXM4-80GB=8 --count 200",
    "slotwise simulate --gangs unaware,aware": "slotwise simulate --gangs unaware,aware --count 300",
    "slotwise simulate --quota docs/examples/pools.yaml,docs/examples/pools-strict.yaml --seeds 42..44":
        "slotwise simulate --quota docs/examples/pools.yaml,docs/examples/pools-strict.yaml --seeds 42 --count 200",
    "slotwise simulate --burst docs/examples/burst.yaml,docs/examples/burst-patient.yaml --seeds 42..44":
        "slotwise simulate --burst docs/examples/burst.yaml,docs/examples/burst-patient.yaml --seeds 42 --count 200",
    "slotwise mig simulate": "slotwise mig simulate --jobs 200",
    "slotwise mig simulate --mix random --seed 3 --load 0.9": "slotwise mig simulate --mix random --seed 3 --load 0.9 --jobs 200",
}

# On the openb traces (run when ../shared/traces/openb exists): the fill shortened to one seed and
# policy, grown to 60% of the GPUs instead of 130%.
NEEDS_TRACES = {
    "slotwise simulate --trace ../shared/traces/openb/openb_pod_list_default.csv "
    "--nodes ../shared/traces/openb/openb_node_list_gpu_node.csv --policy fgd,bestfit --seeds 42..51":
        "slotwise simulate --trace ../shared/traces/openb/openb_pod_list_default.csv "
        "--nodes ../shared/traces/openb/openb_node_list_gpu_node.csv --policy fgd --seeds 42 --inflation 0.6",
    "slotwise place --nodes ../shared/traces/openb/openb_node_list_gpu_node.csv "
    "--pods ../shared/traces/openb/openb_pod_list_default.csv --policy fgd":
        "slotwise place --nodes ../shared/traces/openb/openb_node_list_gpu_node.csv "
        "--pods ../shared/traces/openb/openb_pod_list_default.csv --policy fgd",
}

ASSIGNMENT = re.compile(r"(\w+)=\$\((.*)\)")


@dataclass(frozen=True)
class Command:
    doc: str
    text: str  # as documented, continuations joined and the comment dropped
    variable: str | None  # VAR=$(slotwise ...) assigns the command's output to VAR


def _lines(block: str) -> list[str]:
    """Shell lines of a block, with ``\\`` continuations joined."""
    lines, pending = [], ""
    for line in block.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1].strip() + " "
        else:
            lines.append(pending + line.strip())
            pending = ""
    return lines


def documented(doc: Path) -> list[Command]:
    """The ``slotwise`` commands of a document's bash blocks, in order (also after ``&&``)."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", doc.read_text(), re.S | re.M):
        for line in _lines(block):
            for segment in " ".join(shlex.split(line, comments=True, posix=False)).split(" && "):
                match = ASSIGNMENT.fullmatch(segment)
                text = match.group(2) if match else segment
                if text.startswith("slotwise "):
                    commands.append(Command(doc.name, text, match.group(1) if match else None))
    return commands


ALL = [c for doc in DOCS for c in documented(doc)]


def test_every_listed_command_is_documented():
    """An exception for a command the docs no longer show is stale: remove it."""
    listed = set(SKIPPED) | set(SHORTER) | set(NEEDS_TRACES)
    assert not listed - {c.text for c in ALL}, sorted(listed - {c.text for c in ALL})


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
    """Per document: a working directory, its database URL and the shell variables set so far."""
    made: dict[str, tuple[Path, str, dict[str, str]]] = {}

    def get(doc: str) -> tuple[Path, str, dict[str, str]]:
        if doc not in made:
            base = tmp_path_factory.mktemp(doc.replace(".", "-"))
            work = base / "work"
            (work / "tests").mkdir(parents=True)
            (work / "docs").symlink_to(ROOT / "docs")
            (work / "tests" / "recorded").symlink_to(ROOT / "tests" / "recorded")
            if TRACES.parent.parent.exists():
                (base / "shared").symlink_to(TRACES.parent.parent)
            made[doc] = (work, f"sqlite:///{base / 'slotwise.db'}", {})
        return made[doc]

    return get


def _argv(text: str, variables: dict[str, str]) -> tuple[list[str], str | None]:
    """Arguments after ``slotwise`` with ``$VAR`` expanded, and the file of a ``> FILE`` redirection."""
    words = shlex.split(re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], text))
    if len(words) > 2 and words[-2] == ">":
        return words[1:-2], words[-1]
    assert not {">", ">>", "|", "<", ";"} & set(words), f"shell syntax this test cannot run: {text}"
    return words[1:], None


@pytest.mark.parametrize("command", ALL, ids=[f"{c.doc}:{c.text}" for c in ALL])
def test_documented_command_exits_0(command, workdirs, monkeypatch):
    if command.text in SKIPPED:
        pytest.skip(SKIPPED[command.text])
    text = SHORTER.get(command.text, command.text)
    if command.text in NEEDS_TRACES:
        if not TRACES.is_dir():
            pytest.skip(f"needs the openb traces in {TRACES.relative_to(ROOT.parent)}")
        text = NEEDS_TRACES[command.text]
    work, db, variables = workdirs(command.doc)
    monkeypatch.chdir(work)
    args, out = _argv(text, variables)
    result = CliRunner().invoke(app, args, env={"SLOTWISE_DB": db, "COLUMNS": "120"})
    assert result.exit_code == 0, f"{text}\n{result.output}"
    if out is not None:
        (work / out).write_text(result.stdout)
    if command.variable is not None:
        value = result.stdout.strip()
        assert re.fullmatch(r"\S+", value), f"{command.variable}=$({text}) would not hold one word: {result.stdout!r}"
        variables[command.variable] = value

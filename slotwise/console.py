"""The console every ``slotwise`` command prints through, and the command groups they form."""

from __future__ import annotations

import typer
from rich.console import Console

#: Columns for output that goes to a file or a pipe: wide enough that no table is cut or wrapped.
UNBOUNDED_COLUMNS = 10_000


def make_console() -> Console:
    """A terminal's own width; without a terminal (``| cat``, ``> file``) lines are never cut
    or wrapped, so scripts read every value whole. Rich would assume 80 columns there."""
    console = Console()
    return console if console.is_terminal else Console(width=UNBOUNDED_COLUMNS, soft_wrap=True)


def command_group(help: str) -> typer.Typer:
    """A group of commands with plain help and one-line usage errors: typer's rich help loads
    rich's Markdown renderer (0.15 s before every --help) and draws errors as boxed panels."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)


def failure(console: Console, problem: object) -> typer.Exit:
    """Print ``error: <problem>`` on one line, however long its paths, and return the exit (code
    2: the input cannot be used) for the command to raise."""
    console.print(f"[red]error:[/red] {problem}", highlight=False, soft_wrap=True)
    return typer.Exit(2)

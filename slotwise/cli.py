"""The ``slotwise`` command: every command and group of ``slotwise.commands``, assembled.

Each command imports what it needs when it runs: --help and the quick commands never load numpy,
SQLAlchemy, OR-Tools, matplotlib, the Kubernetes client or FastAPI.
"""

from __future__ import annotations

from slotwise.commands.burst import app as burst_app
from slotwise.commands.gpu_reservation import gpu_reservation
from slotwise.commands.mig import app as mig_app
from slotwise.commands.place import place, policies
from slotwise.commands.quota import app as quota_app
from slotwise.commands.serve import serve
from slotwise.commands.simulate import simulate
from slotwise.commands.ungate import ungate
from slotwise.console import command_group

app = command_group("slotwise: placement, quota, MIG and overflow for Kubernetes ML platforms.")
app.command()(simulate)
app.command()(serve)
app.command()(policies)
app.command()(place)
app.command(name="gpu-reservation")(gpu_reservation)
app.command()(ungate)
app.add_typer(quota_app, name="quota")
app.add_typer(burst_app, name="burst")
app.add_typer(mig_app, name="mig")

if __name__ == "__main__":
    app()

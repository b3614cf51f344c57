"""``slotwise serve``'s listeners: one for everything, and with ``--client-ca`` a second one that
requires a client certificate, for the webhooks and the extender. uvicorn tells an application
nothing about the peer's certificate, so the listener that verified it is what marks a request."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from types import FrameType

import uvicorn

#: How long a thread may hold the GIL while another waits for it (Python's default: 5 ms). The
#: admission loop plans in a thread of its own; at the default, a request on the event loop waited
#: up to that at each handoff, and the webhooks sit in every pod create, the extender in each of
#: kube-scheduler's one-pod-at-a-time cycles (benchmarks/README.md, "The Service's proxy").
GIL_SWITCH_S = 0.0005


class _Beside(uvicorn.Server):
    """A listener that serves beside the main one and stops with it: the main one owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Main(uvicorn.Server):
    """The listener that handles SIGTERM and SIGINT, and tells the others to stop too, so that
    they all finish their requests in flight at once."""

    def __init__(self, config: uvicorn.Config, others: list[_Beside]):
        super().__init__(config)
        self.others = others

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        for other in self.others:
            other.should_exit = True
        super().handle_exit(sig, frame)


async def _serve_all(main: _Main) -> None:
    tasks = [asyncio.create_task(other.serve()) for other in main.others]
    try:
        await main.serve()
    finally:  # also when the main listener could not start
        for other in main.others:
            other.should_exit = True
        await asyncio.gather(*tasks)


def run(main: uvicorn.Config, *others: uvicorn.Config) -> None:
    """Serve ``main`` and ``others`` (each with ``lifespan="off"``: the application starts once)
    on one event loop until a signal. Like ``uvicorn.run``, it re-raises the signal it stopped on."""
    sys.setswitchinterval(GIL_SWITCH_S)
    server = _Main(main, [_Beside(config) for config in others])
    with asyncio.Runner(loop_factory=main.get_loop_factory()) as runner:
        runner.run(_serve_all(server))

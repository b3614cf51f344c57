"""The discrete-event core: a simulated clock and a queue of events.

Events are ordered by (time, priority, sequence): at equal times a lower priority runs first
(departures before arrivals, so freed capacity is there for the newcomer), and at equal time and
priority the event scheduled first runs first. Nothing here reads the wall clock, so a run is a
pure function of its inputs.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Generic, TypeVar

T = TypeVar("T")


class Priority(IntEnum):
    DEPARTURE = 0
    ARRIVAL = 1
    SAMPLE = 2


@dataclass(frozen=True, order=True, slots=True)
class Event(Generic[T]):
    time: float
    priority: int
    sequence: int
    payload: T = field(compare=False)


class EventQueue(Generic[T]):
    """A min-heap of events with a clock that only moves forward as events are taken."""

    def __init__(self, start: float = 0.0):
        self.now = start
        self._heap: list[Event[T]] = []
        self._sequence = itertools.count()

    def schedule(self, time: float, priority: int, payload: T) -> Event[T]:
        if time < self.now:
            raise ValueError(f"cannot schedule at {time}: the clock is already at {self.now}")
        event = Event(time, int(priority), next(self._sequence), payload)
        heapq.heappush(self._heap, event)
        return event

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self) -> Iterator[Event[T]]:
        """Take events in order until none is left (handlers may schedule more meanwhile)."""
        while self._heap:
            event = heapq.heappop(self._heap)
            self.now = event.time
            yield event

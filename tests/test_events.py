"""The discrete-event queue: the order events come out in is what makes simulations reproducible.

Ordering is (time, priority, sequence): at equal times departures run before arrivals (so freed
capacity is there for the newcomer) and arrivals before samples (so a sample sees the instant's
arrivals); at equal time and priority, the event scheduled first runs first.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.events import Event, EventQueue, Priority


def drain(queue: EventQueue) -> list:
    return [event.payload for event in queue]


def test_events_come_out_in_time_order_whatever_the_scheduling_order() -> None:
    queue: EventQueue[str] = EventQueue()
    for time, name in [(30.0, "c"), (10.0, "a"), (20.0, "b"), (0.0, "start"), (25.5, "b2")]:
        queue.schedule(time, Priority.ARRIVAL, name)
    assert len(queue) == 5
    assert drain(queue) == ["start", "a", "b", "b2", "c"]
    assert len(queue) == 0


def test_at_equal_time_departure_then_arrival_then_sample() -> None:
    """A pod leaving at t frees capacity for one arriving at t, and the sample at t sees both."""
    queue: EventQueue[str] = EventQueue()
    queue.schedule(5.0, Priority.SAMPLE, "sample")
    queue.schedule(5.0, Priority.ARRIVAL, "arrival")
    queue.schedule(5.0, Priority.DEPARTURE, "departure")
    queue.schedule(4.0, Priority.SAMPLE, "earlier sample")
    assert drain(queue) == ["earlier sample", "departure", "arrival", "sample"]


def test_priorities_are_ordered_departure_arrival_sample() -> None:
    assert Priority.DEPARTURE < Priority.ARRIVAL < Priority.SAMPLE


def test_equal_time_and_priority_keep_scheduling_order() -> None:
    """Ties are settled by the order of scheduling, never by the payload (which need not compare)."""
    queue: EventQueue[object] = EventQueue()
    payloads = [{"pod": name} for name in "zyxwvu"]  # dicts cannot be ordered: a comparison would raise
    for p in payloads:
        queue.schedule(7.0, Priority.ARRIVAL, p)
    assert drain(queue) == payloads


def test_schedule_returns_the_event_with_increasing_sequence() -> None:
    queue: EventQueue[str] = EventQueue()
    first = queue.schedule(1.0, Priority.SAMPLE, "x")
    second = queue.schedule(1.0, Priority.SAMPLE, "y")
    assert isinstance(first, Event)
    assert (first.time, first.priority, first.payload) == (1.0, int(Priority.SAMPLE), "x")
    assert second.sequence > first.sequence
    assert first < second


def test_handlers_may_schedule_new_events_while_iterating() -> None:
    """Events scheduled by a handler are merged into the order, including ones at the current
    instant with a later priority, and ones before events already queued."""
    queue: EventQueue[str] = EventQueue()
    queue.schedule(0.0, Priority.ARRIVAL, "arrive a")
    queue.schedule(50.0, Priority.ARRIVAL, "arrive b")
    seen = []
    for event in queue:
        seen.append((event.time, event.payload))
        if event.payload == "arrive a":
            queue.schedule(event.time + 20, Priority.DEPARTURE, "leave a")  # before "arrive b"
            queue.schedule(event.time, Priority.SAMPLE, "sample at 0")  # same instant, later priority
        elif event.payload == "arrive b":
            queue.schedule(event.time, Priority.DEPARTURE, "leave b")  # now, lower priority: still runs next
    assert seen == [(0.0, "arrive a"), (0.0, "sample at 0"), (20.0, "leave a"), (50.0, "arrive b"),
                    (50.0, "leave b")]


def test_now_follows_the_events() -> None:
    queue: EventQueue[str] = EventQueue(start=2.0)
    assert queue.now == 2.0
    for t in (9.0, 3.0, 5.0):
        queue.schedule(t, Priority.ARRIVAL, str(t))
    assert queue.now == 2.0  # scheduling does not move the clock
    clock = []
    for event in queue:
        assert queue.now == event.time
        clock.append(queue.now)
    assert clock == [3.0, 5.0, 9.0]
    assert queue.now == 9.0  # the clock stays at the last event


def test_scheduling_in_the_past_raises() -> None:
    queue: EventQueue[str] = EventQueue()
    queue.schedule(10.0, Priority.ARRIVAL, "a")
    queue.schedule(20.0, Priority.ARRIVAL, "b")
    for event in queue:
        if event.payload == "a":
            with pytest.raises(ValueError, match="clock is already at 10"):
                queue.schedule(9.5, Priority.DEPARTURE, "too late")
            queue.schedule(10.0, Priority.SAMPLE, "now is fine")
    with pytest.raises(ValueError):
        EventQueue(start=5.0).schedule(4.0, Priority.SAMPLE, "before the start")


def test_the_past_is_rejected_without_changing_the_queue() -> None:
    queue: EventQueue[str] = EventQueue(start=5.0)
    queue.schedule(6.0, Priority.ARRIVAL, "ok")
    with pytest.raises(ValueError):
        queue.schedule(1.0, Priority.ARRIVAL, "rejected")
    assert len(queue) == 1
    assert drain(queue) == ["ok"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5).map(float), st.sampled_from(list(Priority))), max_size=40))
def test_order_is_time_then_priority_then_insertion(pairs: list[tuple[float, Priority]]) -> None:
    """Few distinct times and priorities, so that ties are common and the sequence matters."""
    queue: EventQueue[int] = EventQueue()
    for index, (time, priority) in enumerate(pairs):
        queue.schedule(time, priority, index)
    expected = sorted(range(len(pairs)), key=lambda i: (pairs[i][0], pairs[i][1], i))
    assert drain(queue) == expected

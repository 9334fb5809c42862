from __future__ import annotations

import threading
import time

from orchestrator.clock import TurnClock
from shared.settings import Settings


def test_deadlines_fire_in_deadline_order_not_schedule_order() -> None:
    fired: list[str] = []
    done = threading.Event()

    def on_deadline(turn_id: str) -> None:
        fired.append(turn_id)
        if len(fired) == 3:
            done.set()

    clock = TurnClock(Settings(sweep_interval_s=60), on_deadline)
    now = time.time()
    clock.schedule("late", now + 0.15)
    clock.schedule("early", now + 0.05)
    clock.schedule("middle", now + 0.10)
    assert done.wait(5)
    clock.stop()
    assert fired == ["early", "middle", "late"]


def test_a_failing_merge_does_not_stop_the_clock() -> None:
    fired: list[str] = []
    done = threading.Event()

    def on_deadline(turn_id: str) -> None:
        fired.append(turn_id)
        if turn_id == "bad":
            raise RuntimeError("database down")
        done.set()

    clock = TurnClock(Settings(sweep_interval_s=60), on_deadline)
    clock.schedule("bad", time.time())
    clock.schedule("good", time.time() + 0.05)
    assert done.wait(5)
    clock.stop()
    assert fired == ["bad", "good"]


def test_a_turn_not_due_yet_is_looked_at_again_when_it_says() -> None:
    seen: list[tuple[str, float]] = []
    done = threading.Event()
    later = time.time() + 0.2

    def on_deadline(turn_id: str) -> float | None:
        seen.append((turn_id, time.time()))
        if len(seen) == 1:
            return later  # an agent started late: its own deadline is later than the turn's first
        done.set()
        return None

    clock = TurnClock(Settings(sweep_interval_s=60), on_deadline)
    clock.schedule("t", time.time())
    assert done.wait(5)
    clock.stop()
    assert [turn for turn, _ in seen] == ["t", "t"]
    assert seen[1][1] >= later  # not before it said


def test_a_sweep_that_takes_long_does_not_hold_back_a_deadline() -> None:
    """A sweep can wait on another process's sweep or on the broker; the merge due meanwhile
    is not kept waiting behind it."""
    sweeping, release, fired = threading.Event(), threading.Event(), threading.Event()

    def sweep() -> None:
        sweeping.set()
        release.wait(10)  # a sweep stuck until the deadline has fired

    clock = TurnClock(Settings(sweep_interval_s=0.01), lambda _turn: fired.set(), sweep)
    try:
        assert sweeping.wait(5)
        clock.schedule("t", time.time())
        assert fired.wait(5)  # the sweep is still stuck: only the finally below releases it
    finally:
        release.set()
        clock.stop()

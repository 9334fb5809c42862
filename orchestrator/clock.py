"""The orchestrator's clock: merges turns at their deadline and sweeps for stuck work.

A turn's deadline is known only as its agents start (each has its own deadline from its
start, and a turn waits for agents not yet started up to its budget): the action at a
deadline returns a later time when the turn is not due yet, and the clock wakes again then.

Each orchestrator process keeps a heap of the deadlines of the turns it fanned out and a
thread that wakes at the earliest one (a condition-variable wait: millisecond precision,
none of the 1 s tick of broker-side blocking timeouts). Nothing blocks a worker slot
while agents run.

A thread of its own sweeps the database every ``sweep_interval_s`` for what a crashed
process left behind — turns still queued, turns past their deadline that nobody merged,
replies not delivered — so a turn reaches a final state even if the process that
started it was killed. A Postgres advisory lock keeps concurrent sweepers from doing the
same work twice; the conditional updates would make it harmless anyway. The sweep has its
own thread because it can take a few hundred milliseconds (waiting on another process's
sweep, or on the broker): in the deadline thread it delayed the merges due meanwhile.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections.abc import Callable

from shared.settings import Settings

log = logging.getLogger(__name__)


class TurnClock:
    def __init__(
        self,
        settings: Settings,
        on_deadline: Callable[[str], float | None],
        sweep: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_deadline = on_deadline
        self._sweep = sweep
        self._heap: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="switchboard-clock", daemon=True)
        self._thread.start()
        self._sweeping = threading.Event()  # set: stop sweeping
        self._sweeper: threading.Thread | None = None
        if sweep is not None:
            self._sweeper = threading.Thread(target=self._sweep_loop, name="switchboard-sweeper", daemon=True)
            self._sweeper.start()

    def schedule(self, turn_id: str, deadline_at: float) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline_at, turn_id))
            if self._heap[0][1] == turn_id:
                self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._sweeping.set()
        self._thread.join(timeout=5)
        if self._sweeper is not None:
            self._sweeper.join(timeout=5)

    def _loop(self) -> None:
        while True:
            due: list[str] = []
            with self._cond:
                if self._stopped:
                    return
                now = time.time()
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[1])
                if not due:
                    self._cond.wait(timeout=max(0.0, self._heap[0][0] - now) if self._heap else None)
                    continue
            for turn_id in due:
                later = self._guard(self._on_deadline, turn_id)
                if isinstance(later, float):  # not due yet: an agent started late, or has not started
                    self.schedule(turn_id, later)

    def _sweep_loop(self) -> None:
        assert self._sweep is not None
        while not self._sweeping.wait(self._settings.sweep_interval_s):
            self._guard(self._sweep)

    @staticmethod
    def _guard(fn: Callable[..., object], *args: str) -> object:
        try:
            return fn(*args)
        except Exception:  # the clock must outlive any one failure; the sweeper retries
            log.exception("clock action %s%s failed", getattr(fn, "__name__", fn), args)
            return None


_clock: TurnClock | None = None
_clock_pid: int | None = None
_clock_lock = threading.Lock()


def process_clock(factory: Callable[[], TurnClock]) -> TurnClock:
    """One clock per process (a forked child starts its own)."""
    global _clock, _clock_pid
    with _clock_lock:
        if _clock is None or _clock_pid != os.getpid():
            _clock = factory()
            _clock_pid = os.getpid()
        return _clock

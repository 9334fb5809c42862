"""CPU per turn: process CPU (user + system) of the processes that served a run, by group.

A ``CpuMeter`` samples, every ``interval`` seconds while a throughput run lasts, the CPU
time of every process its groups name: each worker's process tree (the process the bench
started and its prefork children), the Postgres backends connected to the bench's database
(``pg_stat_activity``), and the Redis server of the broker. A process seen for the first
time counts from zero if it was born during the window, from its first reading otherwise; a
process that exits counts up to its last reading (at most one interval short). The figures
are per turn: the CPU a group spent over the window, divided by the turns of the window.

Redis serves everybody on its host: its figure is the whole server's, the bench's share
only if nothing else uses it meanwhile. Postgres backends are attributed by database, so
they are the bench's; the server's own processes (WAL writer, checkpointer) are not counted.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import psutil
import psycopg

POSTGRES = "postgres_backends"
REDIS = "redis"
SERVERS = (POSTGRES, REDIS)
SAMPLE_INTERVAL_S = 0.25

# (group, process) pairs a meter reads on each sample.
Discover = Callable[[], Iterable[tuple[str, psutil.Process]]]


@dataclass
class Reading:
    """One process over a window: its CPU seconds when first and last read."""

    group: str
    first: float
    last: float


def spent_by_group(readings: Iterable[Reading]) -> dict[str, float]:
    """CPU seconds each group spent over the window."""
    spent: dict[str, float] = {}
    for r in readings:
        spent[r.group] = spent.get(r.group, 0.0) + max(0.0, r.last - r.first)
    return spent


def cpu_ms_per_turn(
    spent_s: Mapping[str, float], turns: int, workers: Sequence[str], servers: Sequence[str] = SERVERS
) -> dict[str, object]:
    """Milliseconds of CPU per turn, by worker and server group, the workers' sum and the total.

    A server group that could not be attributed (not on this host) is ``None`` and left out
    of the total; one that was attributed and spent nothing is 0.
    """
    if turns <= 0:
        raise ValueError("CPU per turn of no turns")

    def per_turn(seconds: float) -> float:
        return round(seconds * 1000.0 / turns, 3)

    by_worker = {name: per_turn(spent_s.get(name, 0.0)) for name in workers}
    by_server = {name: per_turn(spent_s[name]) if name in spent_s else None for name in servers}
    workers_ms = per_turn(sum(spent_s.get(name, 0.0) for name in workers))
    total_s = sum(spent_s.get(name, 0.0) for name in workers) + sum(spent_s.get(name, 0.0) for name in servers)
    return {
        "workers": workers_ms,
        "by_worker": by_worker,
        **by_server,
        "total": per_turn(total_s),
        "turns": turns,
    }


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


class CpuMeter:
    """Reads the CPU of what its ``sources`` name, in a thread, from ``start()`` to ``stop()``."""

    def __init__(self, *sources: Discover, interval: float = SAMPLE_INTERVAL_S) -> None:
        self.sources = sources
        self.interval = interval
        self.readings: dict[tuple[int, float], Reading] = {}  # (pid, create_time) -> reading
        self.attributed: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-cpu", daemon=True)
        self._started = 0.0
        self.seconds = 0.0

    def __enter__(self) -> CpuMeter:
        self._started = time.time()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.seconds = time.time() - self._started
        for source in self.sources:
            close = getattr(source, "close", None)
            if callable(close):
                close()

    def spent(self) -> dict[str, float]:
        """CPU seconds by group; every group that was seen at least once is present."""
        spent = spent_by_group(self.readings.values())
        return {group: spent.get(group, 0.0) for group in self.attributed}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        found: list[tuple[str, psutil.Process]] = []
        for source in self.sources:
            with contextlib.suppress(Exception):  # a source that cannot be read costs its group, not the run
                found.extend(source())
        for group, proc in found:
            try:
                with proc.oneshot():
                    key = (proc.pid, proc.create_time())
                    cpu = _cpu_s(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            self.attributed.add(group)
            reading = self.readings.get(key)
            if reading is None:
                born_inside = key[1] >= self._started
                self.readings[key] = Reading(group=group, first=0.0 if born_inside else cpu, last=cpu)
            else:
                reading.last = cpu


# --------------------------------------------------------------------------- what to read


def worker_name(cmdline: Sequence[str]) -> str | None:
    """The name a bench worker was started as: its ``--hostname=NAME@…``, or the role after ``worker``."""
    for arg in cmdline:
        if arg.startswith("--hostname="):
            return arg.removeprefix("--hostname=").split("@", 1)[0]
    for i, arg in enumerate(cmdline[:-1]):
        if arg == "worker" and not cmdline[i + 1].startswith("-"):
            return cmdline[i + 1]
    return None


def worker_trees(names: Iterable[str]) -> Discover:
    """The process trees of this process's children that run the workers ``names``."""
    wanted = set(names)

    def discover() -> list[tuple[str, psutil.Process]]:
        found: list[tuple[str, psutil.Process]] = []
        for child in psutil.Process(os.getpid()).children():
            try:
                name = worker_name(child.cmdline())
                if name not in wanted:
                    continue
                found.append((name, child))
                found.extend((name, p) for p in child.children(recursive=True))
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    return discover


class PostgresBackends:
    """The backends connected to ``database`` (not the meter's own, nor those ``exclude`` names).

    Only a server on this host can be read: elsewhere the pids are not ours to read and the
    group stays unattributed.
    """

    def __init__(self, dsn: str, database: str, exclude: Callable[[], Iterable[int]] = tuple) -> None:
        self.dsn = dsn
        self.database = database
        self.exclude = exclude
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def __call__(self) -> list[tuple[str, psutil.Process]]:
        if self._conn is None:
            self._conn = psycopg.connect(self.dsn, autocommit=True)
        rows = self._conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (self.database,)
        ).fetchall()
        skip = set(self.exclude())
        found: list[tuple[str, psutil.Process]] = []
        for (pid,) in rows:
            if not isinstance(pid, int) or pid in skip:
                continue
            with contextlib.suppress(psutil.NoSuchProcess):
                found.append((POSTGRES, psutil.Process(pid)))
        return found

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def redis_server(port: int) -> Discover:
    """The ``redis-server`` process of this host that serves ``port`` (its title names it)."""
    cached: list[psutil.Process] = []

    def discover() -> list[tuple[str, psutil.Process]]:
        if cached and cached[0].is_running():
            return [(REDIS, cached[0])]
        cached.clear()
        for proc in psutil.process_iter(["name", "cmdline"]):
            title = " ".join(proc.info.get("cmdline") or [])
            if (proc.info.get("name") or "").startswith("redis-server") and f":{port}" in title:
                cached.append(proc)
                return [(REDIS, proc)]
        return []

    return discover

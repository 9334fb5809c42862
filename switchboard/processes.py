"""Starting and stopping the stack's processes: used by `switchboard run`, the bench (handed over by
the CLI) and tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from shared.settings import AGENTS

ROLES: tuple[str, ...] = ("orchestrator", *AGENTS)


def switchboard_argv(*args: str) -> list[str]:
    """Run the CLI with the same interpreter, whether or not the entry point is on PATH."""
    return [sys.executable, "-m", "switchboard.cli", *args]


def _die_with_parent() -> None:
    """Linux: a child gets SIGTERM when the process that started it dies, even by SIGKILL,
    so a crashed `switchboard run` leaves no workers behind (elsewhere: the next run's
    clean-up finds them)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class Supervisor:
    """A group of child processes that start together and stop together."""

    env: Mapping[str, str]
    log_dir: Path | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], extra_env: Mapping[str, str] | None = None) -> None:
        out: IO[bytes] | int | None = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            handle = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
            self._logs.append(handle)
            out = handle
        self.procs[name] = subprocess.Popen(
            argv,
            env={**self.env, **(extra_env or {})},
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            start_new_session=True,  # Ctrl-C reaches us; we stop the children in order
            preexec_fn=_die_with_parent,
        )

    def start_worker(
        self, role: str, concurrency: int, extra_env: Mapping[str, str] | None = None, loglevel: str = "INFO"
    ) -> None:
        self.start(
            role, switchboard_argv("worker", role, f"--concurrency={concurrency}", f"--loglevel={loglevel}"), extra_env
        )

    def exited(self) -> dict[str, int]:
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill a process (and its prefork children) the way a crash would."""
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM everything (Celery finishes running tasks), then SIGKILL stragglers."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        end = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.procs.clear()
        for handle in self._logs:
            handle.close()
        self._logs.clear()

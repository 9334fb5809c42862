"""`switchboard run` as a user runs it: its own Postgres and Redis, the API, four workers, Ctrl-C.

Each test gets a data folder of its own and free ports, so it never meets a developer's
running stack or another test. Unlike the rest of tests/integration it needs none of the
machine's services: with no URLs configured the run command brings its own.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from switchboard.embedded import EmbeddedPostgres, EmbeddedRedis, stop_leftover_children
from switchboard.processes import switchboard_argv
from switchboard.servers import free_port_block

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
READY_LINE = "Press Ctrl-C to stop."
START_TIMEOUT_S = 90.0
TICKET = {
    "source": "demo",
    "external_id": "run-command-1",
    "channel": "email",
    "customer": {"id": "cust_1001", "email": "ana.ruiz@example.com", "name": "Ana Ruiz"},
    "subject": "Charged twice",
    "body": "Hi, I was charged twice for my November invoice.",
}


@dataclass
class Run:
    """One `switchboard run` subprocess and everything it printed."""

    proc: subprocess.Popen[str]
    data_dir: Path
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    readers: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def start(cls, env: dict[str, str], data_dir: Path) -> Run:
        proc = subprocess.Popen(
            switchboard_argv("run", "--concurrency=1"),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        run = cls(proc, data_dir)
        assert proc.stdout is not None and proc.stderr is not None
        for stream, lines in ((proc.stdout, run.out), (proc.stderr, run.err)):
            reader = threading.Thread(target=lambda s=stream, ls=lines: ls.extend(s), daemon=True)
            reader.start()
            run.readers.append(reader)
        return run

    def printed(self) -> str:
        return "".join(self.out) + "".join(self.err)

    def wait_ready(self) -> None:
        end = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < end:
            if any(READY_LINE in line for line in self.out):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        logs = "".join(
            f"\n--- {log.name}\n" + log.read_text(errors="replace")[-2000:]
            for log in sorted((self.data_dir / "logs").glob("*.log"))
        )
        raise AssertionError(f"`switchboard run` did not get ready:\n{self.printed()}{logs}")

    def wait_until_children_started(self) -> None:
        """Until the API and the workers are started (run.pids), ready or not."""
        end = time.monotonic() + START_TIMEOUT_S
        while not (self.data_dir / "run.pids").exists():
            assert self.proc.poll() is None and time.monotonic() < end, self.printed()
            time.sleep(0.05)

    def api(self) -> str:
        match = re.search(r"^\s+API\s+(http://\S+)$", "".join(self.out), re.MULTILINE)
        assert match, self.printed()
        return match.group(1)

    def printed_key(self, role: str) -> str:
        match = re.search(rf"^\s+(?:keys\s+)?{role}\s+(sb_\S+)", "".join(self.out), re.MULTILINE)
        assert match, self.printed()
        return match.group(1)

    def metrics_urls(self) -> list[str]:
        return re.findall(r"http://\S+/metrics", "".join(self.out))

    def descendants(self) -> list[psutil.Process]:
        """The API, the workers with their prefork children, and the embedded Redis."""
        return list(psutil.Process(self.proc.pid).children(recursive=True))

    def postmaster(self) -> psutil.Process:
        pid = int((self.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        return psutil.Process(pid)

    def stop(self) -> None:
        """Ctrl-C, as a terminal sends it; then wait for its last words."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for reader in self.readers:
            reader.join(timeout=10)

    def crash(self) -> None:
        """SIGKILL: no chance to stop anything; the children, Redis and Postgres stay up."""
        self.proc.kill()
        self.proc.wait()


def _ready_processes(metrics_text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        if family.name == "switchboard_worker_ready_processes"
        for sample in family.samples
    )


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(procs: list[psutil.Process], timeout: float = 10.0) -> list[psutil.Process]:
    end = time.monotonic() + timeout
    while time.monotonic() < end and any(_running(p) for p in procs):
        time.sleep(0.1)
    return [p for p in procs if _running(p)]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Short, so that the embedded servers' unix sockets fit in sun_path.
    path = Path(tempfile.mkdtemp(prefix="sbrun-"))
    yield path
    # No-ops after a passing test; after a failing one, nothing it started outlives it.
    stop_leftover_children(path, timeout=5)
    EmbeddedRedis(path / "redis", path / "logs" / "redis.log").stop()
    EmbeddedPostgres(path / "postgres").stop()
    shutil.rmtree(path, ignore_errors=True)


def _env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The caller's environment minus any Switchboard configuration, plus free ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    api_port = free_port_block(5)
    env.update(
        PYTHONPATH=str(ROOT),
        SWITCHBOARD_DATA_DIR=str(data_dir),
        SWITCHBOARD_API_PORT=str(api_port),
        SWITCHBOARD_METRICS_PORT=str(api_port + 1),  # the four workers' ports follow on
        SWITCHBOARD_LOG_LEVEL="WARNING",
    )
    env.update({f"SWITCHBOARD_{k.upper()}": v for k, v in settings.items()})
    return env


def _only_keys_get_in(api: str, env: dict[str, str], conversation_id: str, demo_key: str) -> None:
    """On the newcomer's stack: no /v1 route without a key; a key of another source,
    made with `switchboard keys` beside the running stack, sees nothing of demo's."""
    for method, path in [
        ("GET", f"/v1/conversations/{conversation_id}"),
        ("POST", f"/v1/conversations/{conversation_id}/messages"),
        ("DELETE", "/v1/customers/demo/cust_1001"),
    ]:
        response = httpx.request(method, api + path, json={"body": "hi"} if method == "POST" else None, timeout=10)
        assert response.status_code == 401, (method, path, response.text)
    created = subprocess.run(
        [sys.executable, "-m", "switchboard.cli", "keys", "create", "--role", "helpdesk", "--source", "eval",
         "--name", "another helpdesk"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    other = {"Authorization": f"Bearer {created.stdout.strip()}"}
    assert httpx.get(f"{api}/v1/conversations/{conversation_id}", headers=other, timeout=10).status_code == 404
    follow_up = httpx.post(
        f"{api}/v1/conversations/{conversation_id}/messages", json={"body": "hi"}, headers=other, timeout=10
    )
    assert follow_up.status_code == 404
    # Its own key still reads it.
    mine = {"Authorization": f"Bearer {demo_key}"}
    assert httpx.get(f"{api}/v1/conversations/{conversation_id}", headers=mine, timeout=10).status_code == 200


def test_run_after_a_crashed_run_serves_tickets_and_stops_everything_on_ctrl_c(data_dir: Path) -> None:
    # One test, not two, to start the stack once less: the first run starts from nothing
    # and is killed once its children are up; the second must clear what it left behind.
    env = _env(data_dir)
    crashed = Run.start(env, data_dir)
    try:
        crashed.wait_until_children_started()
        leftovers = crashed.descendants()
    finally:
        crashed.crash()

    run = Run.start(env, data_dir)
    try:
        run.wait_ready()
        assert _wait_gone(leftovers, timeout=1) == []
        api = run.api()
        assert httpx.get(f"{api}/healthz", timeout=5).json() == {"status": "ok"}
        assert httpx.get(f"{api}/docs", timeout=5).status_code == 200
        metrics = run.metrics_urls()
        assert len(metrics) == 5, run.printed()  # the API and four workers
        for url in metrics:
            response = httpx.get(url, timeout=5)
            assert response.status_code == 200, url
            assert response.headers["content-type"].startswith("text/plain"), url
        # "running" only once every worker process (concurrency 1) has loaded the brain
        for url in metrics[1:]:
            assert _ready_processes(httpx.get(url, timeout=5).text) == 1, url

        assert httpx.post(f"{api}/v1/tickets", json=TICKET, timeout=10).status_code == 401  # no key
        helpdesk_key = run.printed_key("helpdesk")
        auth = {"Authorization": f"Bearer {helpdesk_key}"}
        accepted = httpx.post(f"{api}/v1/tickets", json=TICKET, headers=auth, timeout=10)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["created"] is True
        assert "switchboard_messages_ingested_total" in httpx.get(f"{api}/metrics", timeout=5).text
        _only_keys_get_in(api, env, accepted.json()["conversation_id"], helpdesk_key)

        children = run.descendants()
        postmaster = run.postmaster()
        assert len(children) >= 6, children  # API, 4 workers (+ prefork children), Redis
    finally:
        run.stop()

    assert run.proc.returncode == 0, run.printed()
    assert _wait_gone([*children, postmaster]) == []
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    assert not (data_dir / "redis" / "redis.pid").exists()
    assert "Traceback" not in run.printed()
    assert run.out[-1].strip() == "switchboard: stopped", run.printed()


@pytest.mark.parametrize(
    ("setting", "url", "names"),
    [
        ("database_url", "postgresql://postgres@127.0.0.1:1/switchboard", ["Postgres", "SWITCHBOARD_DATABASE_URL"]),
        ("broker_url", "redis://127.0.0.1:1/0", ["broker", "SWITCHBOARD_BROKER_URL"]),
    ],
)
def test_unreachable_server_fails_with_one_line_that_says_what_to_do(
    data_dir: Path, setting: str, url: str, names: list[str]
) -> None:
    result = subprocess.run(
        switchboard_argv("run"),
        cwd=ROOT,
        env=_env(data_dir, **{setting: url}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in [*names, "127.0.0.1:1"]:
        assert word in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not (data_dir / "postgres").exists()  # it failed before starting anything

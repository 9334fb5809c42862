"""When the soak sees a server error, its report carries what the API logged about it: a
failed release check says which bug it found, after the run's folder is gone."""

from __future__ import annotations

import json
from pathlib import Path

from bench.soak import _errors_logged


def _line(level: str, msg: str, **more: str) -> str:
    return json.dumps({"ts": "2026-12-03T12:00:00.000Z", "level": level, "logger": "uvicorn.error", "msg": msg, **more})


def test_the_error_lines_of_the_api_log_come_with_their_tracebacks(tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    log.write_text(
        "\n".join(
            [
                _line("warning", "rate limit not checked (ConnectionError); serving the request"),
                "not a JSON line",
                _line("error", "Exception in ASGI application", exc="Traceback ...\nRuntimeError: boom"),
                _line("info", "Started server process"),
            ]
        )
    )
    assert _errors_logged(log) == [
        "2026-12-03T12:00:00.000Z uvicorn.error: Exception in ASGI application\nTraceback ...\nRuntimeError: boom"
    ]


def test_at_most_the_first_few_errors_and_a_missing_log_is_said(tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    log.write_text("\n".join(_line("error", f"failure {i}") for i in range(9)))
    assert [e.split(": ", 1)[1].strip() for e in _errors_logged(log, most=3)] == ["failure 0", "failure 1", "failure 2"]
    assert "unreadable" in _errors_logged(tmp_path / "gone.log")[0]

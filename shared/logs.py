"""JSON logs, one object per line, for every process."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from shared.guardrails import redact, redact_mapping

_STANDARD = set(vars(logging.makeLogRecord({})))
# Celery passes each task's context as the extra ``data`` (worker/strategy.py, app/trace.py):
# its args and kwargs are ticket bodies, customers and agent windows. They never reach a log.
_TASK_PAYLOAD = frozenset({"args", "kwargs", "argsrepr", "kwargsrepr"})


def _without_payload(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in _TASK_PAYLOAD}
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        entry.update(
            {k: _without_payload(v) for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
        )
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # Whatever a log call passed, cards, emails, phones and secrets leave redacted.
        return json.dumps(redact_mapping(entry), default=str)


class PlainFormatter(logging.Formatter):
    """Lines for a person at a terminal (LOG_JSON=false): redacted like the JSON ones, and with
    no extras at all, so a task's arguments cannot reach them either."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record)).text


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())

"""A local OpenAI-compatible server that answers from a script: for tests of the OpenAI brain.

It speaks real HTTP on 127.0.0.1, so the brain under test uses the real ``openai`` SDK with
no patching. Each test queues canned replies per model (``fake.script("mini", route(...))``),
or functions that build one from the request, and afterwards reads back every request the
server received (``fake.requests``), to check what a provider would have seen: the system
prompt, the tools, the absence of card numbers.

Like the real API, it refuses (HTTP 400) a strict function tool whose schema strict mode
does not accept, so a schema that only a lenient server would take fails here too. A
request with nothing left in its model's queue also gets a 400 and is kept in
``fake.unscripted``, so a test notices calls it did not expect.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_USAGE = {"prompt_tokens": 120, "completion_tokens": 15, "cached_tokens": 0}
# What OpenAI's strict mode refuses in a schema (the subset our tool models can produce).
NOT_PERMITTED = ("default", "minLength", "maxLength", "minProperties", "maxProperties", "patternProperties")
_ids = itertools.count(1)


@dataclass(frozen=True)
class Reply:
    """One canned HTTP response."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Received:
    """One request as the server saw it."""

    path: str
    headers: Mapping[str, str]
    body: dict[str, Any]
    raw: str
    at: float

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def system(self) -> str:
        first = self.messages[0] if self.messages else {}
        return str(first.get("content", "")) if first.get("role") == "system" else ""

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.body.get("tools", [])]


# A reply, or a function that makes one from the request (to cite the call ids it carries).
Scripted = Reply | Callable[[Received], Reply]


def _usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


def completion(message: dict[str, Any], finish_reason: str, usage: Mapping[str, int] | None = None) -> Reply:
    u = {**DEFAULT_USAGE, **(usage or {})}
    return Reply(
        body={
            "id": f"chatcmpl-fake-{next(_ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "scripted",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
            "usage": _usage(u["prompt_tokens"], u["completion_tokens"], u["cached_tokens"]),
        }
    )


def tool_call(name: str, arguments: Mapping[str, Any] | str, *, usage: Mapping[str, int] | None = None) -> Reply:
    """The model calls ``name``; a string is sent as the raw arguments (to send malformed JSON)."""
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    call = {"id": f"call_fake_{next(_ids)}", "type": "function", "function": {"name": name, "arguments": raw}}
    return completion({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls", usage)


def finish(
    status: str = "answered",
    answer: str | None = "Done.",
    *,
    confidence: float = 0.9,
    cited: Iterable[str] = (),
    reason: str | None = None,
    usage: Mapping[str, int] | None = None,
) -> Reply:
    args = {
        "status": status,
        "answer": answer,
        "confidence": confidence,
        "cited_call_ids": list(cited),
        "escalation_reason": reason,
    }
    return tool_call("finish", args, usage=usage)


def route(agents: Iterable[str], intent: str = "", *, usage: Mapping[str, int] | None = None) -> Reply:
    return tool_call("route", {"agents": list(agents), "intent": intent, "confidence": 0.9}, usage=usage)


def text(content: str) -> Reply:
    return completion({"role": "assistant", "content": content}, "stop")


def error(status: int, message: str = "scripted failure", *, retry_after: float | None = None) -> Reply:
    headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
    return Reply(status=status, body={"error": {"message": message, "type": "server_error"}}, headers=headers)


def slow(reply: Reply, seconds: float) -> Reply:
    return replace(reply, delay_s=seconds)


def strict_problems(schema: Any, where: str = "") -> list[str]:
    """What OpenAI's strict mode would refuse in a function's parameters."""
    problems: list[str] = []
    if isinstance(schema, list):
        for i, item in enumerate(schema):
            problems += strict_problems(item, f"{where}[{i}]")
        return problems
    if not isinstance(schema, dict):
        return problems
    problems += [f"{where or '/'}: '{key}' is not permitted" for key in NOT_PERMITTED if key in schema]
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            problems.append(f"{where or '/'}: 'additionalProperties' is required to be supplied and to be false")
        missing = sorted(set(props) - set(schema.get("required", [])))
        if missing:
            problems.append(f"{where or '/'}: 'required' must include every key in properties; missing {missing}")
        for name, sub in props.items():
            problems += strict_problems(sub, f"{where}/properties/{name}")
    for key in ("items", "anyOf", "$defs"):
        sub = schema.get(key)
        if isinstance(sub, dict) and key == "$defs":
            for name, d in sub.items():
                problems += strict_problems(d, f"{where}/$defs/{name}")
        elif sub is not None:
            problems += strict_problems(sub, f"{where}/{key}")
    return problems


class FakeOpenAI:
    """The server. Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(self, validate_strict_tools: bool = True) -> None:
        self.validate_strict_tools = validate_strict_tools
        self.requests: list[Received] = []
        self.unscripted: list[Received] = []
        self._queues: dict[str, deque[Scripted]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-openai", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def script(self, model: str, *replies: Scripted) -> None:
        with self._lock:
            self._queues.setdefault(model, deque()).extend(replies)

    def requests_for(self, model: str) -> list[Received]:
        return [r for r in self.requests if r.model == model]

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases handlers still sleeping on a delayed reply
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_reply(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            if self.validate_strict_tools:
                for i, tool in enumerate(received.body.get("tools", [])):
                    fn = tool.get("function", {})
                    problems = strict_problems(fn.get("parameters", {})) if fn.get("strict") else []
                    if problems:
                        message = f"Invalid schema for function '{fn.get('name')}': {'; '.join(problems)}"
                        body = {"error": {"message": message, "type": "invalid_request_error", "param": f"tools[{i}]"}}
                        return Reply(status=400, body=body)
            queue = self._queues.get(received.model)
            if not queue:
                self.unscripted.append(received)
                message = f"fake server: nothing scripted for model {received.model!r}"
                return Reply(status=400, body={"error": {"message": message, "type": "invalid_request_error"}})
            scripted = queue.popleft()
        return scripted(received) if callable(scripted) else scripted

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(Reply(status=404, body={"error": {"message": f"no route {self.path}"}}))
                    return
                received = Received(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    json.loads(raw or "{}"),
                    raw,
                    time.time(),
                )
                reply = fake._next_reply(received)
                if reply.delay_s and fake._stopping.wait(reply.delay_s):
                    return
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                payload = json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout under test): nothing to answer

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean; ``fake.requests`` is the record

        return Handler

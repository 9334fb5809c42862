"""The bench's stand-in for a model endpoint: every request is answered after a second.

A model call is time spent waiting on HTTP, not CPU: this server is that wait and nothing
else, so the model-bound figure measures how many waits the workers hold at once.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL_WAIT_S = 1.0


class ModelServer:
    def __init__(self, wait_s: float = MODEL_WAIT_S) -> None:
        self.wait_s = wait_s
        self.requests = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the clients reuse their connections

            def do_GET(self) -> None:
                with server._lock:
                    server.requests += 1
                time.sleep(server.wait_s)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.request_queue_size = 1024
        self._thread = threading.Thread(target=self._server.serve_forever, name="bench-model", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ModelServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

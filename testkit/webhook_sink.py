"""A webhook receiver run by the test: records every POST (path, headers, JSON body and the
wall-clock time it arrived, `received_at`) it gets. One sink can stand for several hooks:
`url_for(path)` gives the URL of each, `calls_to(path)` what reached it."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookSink:
    def __init__(self, status: int = 200) -> None:
        self.calls: list[dict] = []
        self.status = status
        self.script: list[int] = []  # statuses to answer first, in order, before `status`
        # While `hold` is clear, each request is recorded and then kept waiting for an answer.
        self.hold = threading.Event()
        self.hold.set()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                received_at = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.calls.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body),
                                   "received_at": received_at})
                sink.hold.wait(30)
                status = sink.script.pop(0) if sink.script else sink.status
                try:
                    self.send_response(status)
                    self.end_headers()
                except OSError:
                    pass  # the caller is gone

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return self.url_for("/hook")

    def url_for(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def calls_to(self, path: str) -> list[dict]:
        return [call for call in list(self.calls) if call["path"] == path]

    def keys(self) -> list[str]:
        return [call["headers"].get("Idempotency-Key", "") for call in self.calls]

    def start(self) -> "WebhookSink":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()

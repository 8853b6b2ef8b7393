"""Load for outage tests: an agent posting OTLP/HTTP requests back to back from a thread.

`Load(url, make_request)` posts `make_request()` requests one after another and retries a
refused one (HTTP 429/503, as the OTLP spec tells a client to) until it is taken; `accepted`
holds the span ids of every request the receiver answered 200, which is exactly what the
daemon must deliver. Any other answer or a connection error is kept in `errors` (a failed
assert in a thread would be lost), for the test to check.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Callable

import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.pdata.traces import iter_spans

PROTOBUF = {"Content-Type": "application/x-protobuf"}


class Load(threading.Thread):
    def __init__(self, url: str, make_request: Callable[[], ExportTraceServiceRequest], pause: float = 0.02,
                 refused_pause: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.make_request = make_request
        self.pause = pause
        self.refused_pause = refused_pause
        self.accepted: set[str] = set()
        self.requests_accepted = 0
        self.refused = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self._session = requests.Session()

    def run(self) -> None:
        while not self.stop.is_set():
            request = self.make_request()
            if self._post_until_taken(request.SerializeToString()):
                self.accepted.update(span.span_id.hex() for span in iter_spans(request))
                self.requests_accepted += 1
            time.sleep(self.pause)

    def _post_until_taken(self, body: bytes) -> bool:
        while not self.stop.is_set():
            try:
                answer = self._session.post(self.url, data=body, headers=PROTOBUF, timeout=30)
            except requests.RequestException as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                return False
            if answer.status_code == 200:
                return True
            if answer.status_code not in (429, 503):
                self.errors.append(f"HTTP {answer.status_code}: {answer.text[:200]}")
                return False
            self.refused += 1
            time.sleep(self.refused_pause)
        return False

    def finish(self, timeout: float = 60) -> None:
        """Stop posting and wait for the request in progress to be answered."""
        self.stop.set()
        self.join(timeout)
        self._session.close()

    def __enter__(self) -> "Load":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


def agent_request(spans: int = 20, service: str = "load-agent") -> ExportTraceServiceRequest:
    """One agent's request: a root `invoke_agent` span and `spans - 1` children, fresh random ids."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = service
    scope = rs.scope_spans.add()
    scope.scope.name = "load"
    trace_id, root_id, now = os.urandom(16), os.urandom(8), time.time_ns()
    for i in range(spans):
        span = scope.spans.add(trace_id=trace_id, span_id=root_id if i == 0 else os.urandom(8),
                               parent_span_id=b"" if i == 0 else root_id, kind=2 if i == 0 else 3,
                               name="invoke_agent planner" if i == 0 else f"chat step{i}",
                               start_time_unix_nano=now + i, end_time_unix_nano=now + 1_000_000 + i)
        span.attributes.add(key="gen_ai.usage.input_tokens").value.int_value = 100 + i
    return request

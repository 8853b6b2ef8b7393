"""`zipkin` receiver: Zipkin v2 spans over HTTP (default localhost:9411), translated to OTLP.

`POST /api/v2/spans` with `application/json` (a JSON array of v2 spans; also when the
Content-Type is missing, as Zipkin assumes) or `application/x-protobuf` (zipkin.proto3
`ListOfSpans`); `Content-Encoding: gzip` or `deflate`. The translation follows otelcol
contrib's zipkin receiver (see `receivers.zipkin.translate`).

What it promises: a request is answered 202 Accepted (as Zipkin answers) only after every
pipeline it feeds has taken the spans. When a stage refuses (full queue, memory limit) the
client gets 503, or 429 for overload, with `Retry-After`, and nothing is counted as
accepted; a stage's permanent error is 400. Bad input is refused as a whole with a clear
message and never reaches the pipeline: 400 for malformed JSON / protobuf, wrong types and
wrong id lengths; 415 for another Content-Type or Content-Encoding; 413 for a body (decompressed) over
`max_request_body_size`, stopped at the cap rather than inflated; 405 for a method other
than POST; 404 on `/api/v1/spans` (Zipkin v1 is not supported: send v2). Spans are counted
with otelcol's receiver metrics (`otelcol_receiver_accepted_spans_total`, `..._refused_...`,
`..._failed_...`, transport "http"), rejected requests by reason under
`agentdbg_receiver_rejected_requests_total`. On shutdown it stops taking requests and lets
those in progress finish.
"""
from __future__ import annotations

import asyncio
import time
import zlib
from typing import Any, Callable, TypeVar

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.component import Factory, Kind, Receiver, Settings, Signal
from pipeline.errors import PermanentError, Refused
from pipeline.host import Host
from pipeline.netaddr import BindError, bind_reason, split_host_port
from pipeline.pdata.traces import Traces
from pipeline.telemetry import metrics
from pipeline.telemetry.logs import RateLimit, ServerLog
from receivers.zipkin.config import ZipkinReceiverConfig
from receivers.zipkin.translate import BadSpans, from_json, from_proto, to_otlp

T = TypeVar("T")

JSON, PROTOBUF = "application/json", "application/x-protobuf"
WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
MAX_MESSAGE = 512
LOG_INTERVAL = 10.0
IN_THREAD_BYTES = 256 * 1024


async def _call(function: Callable[..., T], *args: Any) -> T:
    return function(*args)


class Rejected(Exception):
    """A request answered with an error before its spans reached the pipeline."""

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + "...")
        self.status, self.reason, self.retry_after = status, reason, retry_after


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """`body` decompressed, never past `limit` bytes (413 beyond it, 400 when corrupt)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in WBITS:
        raise Rejected(415, "unsupported", f"unsupported Content-Encoding {encoding!r} (supported: gzip, deflate)")
    inflater = zlib.decompressobj(WBITS[encoding])
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise Rejected(400, "malformed", f"invalid {encoding} body: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise Rejected(413, "too_large", f"decompressed request body exceeds the limit of {limit} bytes")
    if not inflater.eof:
        raise Rejected(400, "malformed", f"invalid {encoding} body: truncated stream")
    return out


class ZipkinReceiver(Receiver):
    def __init__(self, settings: Settings, config: ZipkinReceiverConfig) -> None:
        super().__init__(settings)
        self.config = config
        labels = (str(self.id), "http")
        self.accepted = metrics.receiver_accepted_spans.labels(*labels)
        self.refused = metrics.receiver_refused_spans.labels(*labels)
        self.failed = metrics.receiver_failed_spans.labels(*labels)
        self._rejected = {reason: metrics.receiver_rejected_requests.labels(*labels, reason)
                          for reason in ("malformed", "too_large", "unsupported", "no_pipeline")}
        self._log_limits = {reason: RateLimit(LOG_INTERVAL) for reason in self._rejected}
        self._runner: web.AppRunner | None = None

    async def start(self, host: Host) -> None:
        # First: an unreadable certificate is its own error, not a bind error, and leaves nothing open.
        ssl_context = self.config.tls.ssl_context() if self.config.tls else None
        app = web.Application(client_max_size=self.config.max_request_body_size + 1)
        app.router.add_route("*", "/api/v2/spans", self._spans)
        app.router.add_route("*", "/api/v1/spans", self._v1)
        # auto_decompress off: aiohttp would inflate a gzip body without a cap.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False,
                                     logger=ServerLog(self.log, self.config.endpoint))
        await self._runner.setup()
        host_name, port = split_host_port(self.config.endpoint)
        try:
            await web.TCPSite(self._runner, host_name, port, ssl_context=ssl_context, reuse_port=False).start()
        except OSError as exc:
            await self.shutdown()
            raise BindError(self.config.endpoint, bind_reason(exc), "Zipkin") from None
        self.log.info("receiver listening", extra={"kv": {"http": self.config.endpoint}})

    async def shutdown(self, deadline: float | None = None) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _v1(self, request: web.Request) -> web.Response:
        return web.Response(status=404, text="Zipkin v1 spans are not supported by this receiver: "
                                             "send Zipkin v2 (JSON or protobuf) to /api/v2/spans\n")

    async def _spans(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return web.Response(status=405, headers={"Allow": "POST"},
                                text="405 method not allowed, supported: [POST]\n")
        try:
            body, content_type = await self._read(request)
            # A large body takes seconds to decode (~10k spans/s): in a thread, so the loop keeps
            # serving health checks and the other receivers meanwhile.
            translate = asyncio.to_thread if len(body) > IN_THREAD_BYTES else _call
            message = await translate(self._translate, body, content_type)
            await self._push(message, time.time())
        except Rejected as exc:
            if exc.reason in self._rejected:
                self._count_rejected(exc)
            headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after is not None else {}
            return web.Response(status=exc.status, text=f"{exc}\n", headers=headers)
        return web.Response(status=202)

    async def _read(self, request: web.Request) -> tuple[bytes, str]:
        content_type = request.content_type if "Content-Type" in request.headers else JSON
        if content_type not in (JSON, PROTOBUF):
            raise Rejected(415, "unsupported",
                           f"unsupported media type {content_type!r}, supported: [{JSON}, {PROTOBUF}]")
        limit = self.config.max_request_body_size
        if request.content_length is not None and request.content_length > limit:
            raise Rejected(413, "too_large", f"request body of {request.content_length} bytes exceeds the limit "
                                             f"of {limit} bytes")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise Rejected(413, "too_large", f"request body exceeds the limit of {limit} bytes") from None
        return _inflate(raw, request.headers.get("Content-Encoding", ""), limit), content_type

    def _translate(self, body: bytes, content_type: str) -> ExportTraceServiceRequest:
        try:
            spans = from_proto(body) if content_type == PROTOBUF else from_json(body)
        except BadSpans as exc:
            raise Rejected(400, "malformed", str(exc)) from None
        return to_otlp(spans, self.config.parse_string_tags)

    async def _push(self, message: ExportTraceServiceRequest, received_at: float) -> None:
        consumer = self.consumers.get(Signal.TRACES)
        if consumer is None:
            raise Rejected(404, "no_pipeline", "no traces pipeline takes spans from this receiver")
        batch = Traces(message, None, None, received_at)
        count = batch.item_count
        if not count:
            return
        try:
            await consumer.consume(batch)
        except Refused as exc:
            self.refused.inc(count)
            raise Rejected(429 if exc.overload else 503, "refused", str(exc), exc.retry_after or 1.0) from None
        except PermanentError as exc:
            self.failed.inc(count)
            raise Rejected(400, "permanent", str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - a stage's bug must not become a 500 or a lost connection
            self.refused.inc(count)
            self.log.error("a pipeline stage failed on a request; answered as retryable", exc_info=True,
                           extra={"kv": {"spans": count}})
            raise Rejected(503, "refused", f"the pipeline failed on the request: {exc!r}", 1.0) from None
        self.accepted.inc(count)

    def _count_rejected(self, exc: Rejected) -> None:
        self._rejected[exc.reason].inc()
        held_back = self._log_limits[exc.reason].allow()
        if held_back is not None:
            self.log.warning("request rejected", extra={"kv": {
                "reason": exc.reason, "error": str(exc), "held_back": held_back, "per_s": LOG_INTERVAL}})


factory = Factory("zipkin", Kind.RECEIVER, ZipkinReceiverConfig, ZipkinReceiver,
                  signals=frozenset({Signal.TRACES}),
                  description="Zipkin v2 spans (JSON, protobuf) over HTTP, translated to OTLP")

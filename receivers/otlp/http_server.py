"""OTLP/HTTP transport: `POST /v1/traces` (and the other signal paths) on aiohttp.

- POST only (405 with `Allow: POST`); `application/x-protobuf` or `application/json`
  (415 otherwise); the answer uses the request's encoding.
- `Content-Encoding` gzip, deflate or zstd, decompressed in a stream that stops at
  `max_request_body_size` (413, not retryable): a bomb never inflates past the cap.
- Errors are a google.rpc.Status; retryable refusals (503, 429) carry `Retry-After`.
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from aiohttp import web
from google.protobuf.message import DecodeError

from pipeline import otlp_json
from pipeline.auth import Unauthenticated
from pipeline.component import Consumer, Signal
from pipeline.netaddr import BindError, bind_reason, split_host_port
from pipeline.telemetry.logs import ServerLog
from receivers.otlp.config import HttpConfig
from receivers.otlp.decompress import CorruptBody, TooLarge, UnsupportedEncoding, decoder_for
from receivers.otlp.ingest import Ingest, Outcome
from receivers.otlp.signals import SPECS, SignalSpec
from receivers.otlp.status import response_of, retry_seconds, status_of

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CHUNK = 64 * 1024
NOTHING_REFUSED = (0, "")  # items left out while decoding (SignalSpec.parse): none
_log = logging.getLogger("agentdbg.receiver.otlp")


class HttpTransport:
    def __init__(self, config: HttpConfig, ingests: dict[Signal, Ingest],
                 consumer_of: Callable[[Signal], Consumer | None]) -> None:
        self.config = config
        self.ingests = ingests
        self.consumer_of = consumer_of
        self.authenticator: Any = None  # set by the receiver when `auth` is configured
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=self.config.max_request_body_size)
        paths = {Signal.TRACES: self.config.traces_url_path, Signal.METRICS: self.config.metrics_url_path,
                 Signal.LOGS: self.config.logs_url_path}
        for signal, path in paths.items():
            if signal in SPECS:
                app.router.add_route("*", path, self._handler(SPECS[signal]))
        if Signal.TRACES in SPECS:  # e.g. Langfuse's own OTLP path (config.py)
            for alias in dict.fromkeys(self.config.traces_url_aliases):
                if alias != self.config.traces_url_path:
                    app.router.add_route("*", alias, self._handler(SPECS[Signal.TRACES]))
        # auto_decompress off: aiohttp would inflate gzip bodies without a size cap.
        # Our logger: a client speaking something else than HTTP/1.x is one rate-limited warning.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False,
                                     logger=ServerLog(_log, self.config.endpoint))
        await self._runner.setup()
        host, port = split_host_port(self.config.endpoint)
        ssl_context = self.config.tls.ssl_context() if self.config.tls else None
        try:
            await web.TCPSite(self._runner, host, port, ssl_context=ssl_context,
                            reuse_port=self.config.reuse_port).start()
        except OSError as exc:
            await self.stop()
            raise BindError(self.config.endpoint, bind_reason(exc), "OTLP/HTTP") from None

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _handler(self, spec: SignalSpec) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        ingest = self.ingests[spec.signal]

        async def export(request: web.Request) -> web.StreamResponse:
            if request.method != "POST":
                return web.Response(status=405, headers={"Allow": "POST"},
                                    text="405 method not allowed, supported: [POST]")
            content_type = request.content_type
            if self.authenticator:
                try:
                    await self.authenticator.authenticate(request.headers)
                except Unauthenticated as exc:
                    denied = ingest.reject_request("unauthenticated", Outcome.unauthenticated(exc.reason))
                    response = _answer(spec, denied, content_type if content_type == JSON else PROTOBUF)
                    response.headers["WWW-Authenticate"] = exc.challenge
                    return response
            if content_type not in (PROTOBUF, JSON):
                ingest.reject_request("unsupported", Outcome.bad_request(f"content type {content_type!r}"))
                return web.Response(status=415, content_type="text/plain",
                                    text=f"415 unsupported media type {content_type!r}, "
                                         f"supported: [{JSON}, {PROTOBUF}]")
            outcome, message, wire, refused = await self._decode(request, spec, ingest, content_type)
            if outcome is None:
                outcome = await ingest.push(self.consumer_of(spec.signal), message, wire, refused)
            return _answer(spec, outcome, content_type)

        return export

    async def _decode(self, request: web.Request, spec: SignalSpec, ingest: Ingest, content_type: str
                      ) -> tuple[Outcome | None, Any, bytes | None, tuple[int, str]]:
        """(None, message, wire, refused) for a request to push; (outcome, None, None, ...) for one refused whole."""
        limit = self.config.max_request_body_size
        if request.content_length is not None and request.content_length > limit:
            return _refused_whole(ingest.reject_request("too_large", Outcome.payload_too_large(
                f"request body of {request.content_length} bytes exceeds the limit of {limit} bytes")))
        try:
            decoder = decoder_for(request.headers.get("Content-Encoding", ""), limit)
            async for chunk in request.content.iter_chunked(CHUNK):
                decoder.feed(chunk)
            body = decoder.finish()
        except TooLarge as exc:
            return _refused_whole(ingest.reject_request("too_large", Outcome.payload_too_large(str(exc))))
        except UnsupportedEncoding as exc:
            return _refused_whole(ingest.reject_request("unsupported", Outcome.bad_request(str(exc))))
        except CorruptBody as exc:
            return _refused_whole(ingest.reject_request("malformed", Outcome.bad_request(str(exc))))
        try:
            if content_type == PROTOBUF:
                message, refused, why = spec.parse(body)
                return None, message, body, (refused, why)
            return None, otlp_json.decode(body, spec.request_type), None, NOTHING_REFUSED
        except (DecodeError, otlp_json.JsonDecodeError) as exc:
            outcome = Outcome.bad_request(f"cannot decode the body: {exc}")
            return _refused_whole(ingest.reject_request("malformed", outcome))


def _refused_whole(outcome: Outcome) -> tuple[Outcome, None, None, tuple[int, str]]:
    """`_decode`'s answer for a request refused as a whole."""
    return outcome, None, None, NOTHING_REFUSED


def _answer(spec: SignalSpec, outcome: Outcome, content_type: str) -> web.Response:
    headers = {}
    if outcome.code == 0:
        message = response_of(spec, outcome)
    else:
        message = status_of(outcome)
        if outcome.retry_after is not None:
            headers["Retry-After"] = str(retry_seconds(outcome))
    if content_type == JSON:
        body = otlp_json.encode(message)
    else:
        body = message.SerializeToString()
    return web.Response(status=outcome.http_status, body=body, content_type=content_type, headers=headers)

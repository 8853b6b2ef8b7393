"""OTLP sinks for the Tempo path (what an `otlp` / `otlphttp` exporter sends to).

- `sink_daemon(workdir)`: a second `agentdbg run` (BASE_CONFIG's otlp receiver, gRPC and
  HTTP → batch → `file` exporter, OTLP/JSON lines or protobuf records) whose file records
  every request that arrives; `sink_requests` / `sink_ids` read it back. SIGSTOP on it is
  an unreachable backend.
- `RecordingSink`: a small OTLP/HTTP server (aiohttp, in a thread) that answers
  `POST /v1/traces` the way an OTLP/HTTP server does (200 with an
  `ExportTraceServiceResponse` in the request's encoding) and records each request's
  headers and decoded body, so a test can see e.g. that `X-Scope-OrgID` reached it.
"""
from __future__ import annotations

import asyncio
import gzip
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from pipeline import otlp_json
from testkit.harness import BASE_CONFIG, Daemon, file_exporter, free_port, pipeline_overlay
from testkit.otlp_spans import read_json_lines, read_proto_records, span_ids


def sink_daemon(workdir: Path, file_format: Literal["json", "proto"] = "json") -> Daemon:
    """The sink daemon (not started): gRPC at `ports['grpc']`, HTTP at `ports['http']`; its file
    holds OTLP/JSON lines, or length-prefixed protobuf (cheaper, for benchmarks)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return Daemon(BASE_CONFIG, workdir=workdir,
                  overlay=pipeline_overlay(file_exporter(f"sink.{file_format}", format=file_format)))


def sink_requests(sink: Daemon) -> list[ExportTraceServiceRequest]:
    proto = sink.dir / "sink.proto"
    return read_proto_records(proto) if proto.exists() else read_json_lines(sink.dir / "sink.json")


def sink_ids(sink: Daemon) -> list[str]:
    """Span id hex of every span the sink has written, one entry per copy."""
    return span_ids(sink_requests(sink))


@dataclass
class Received:
    headers: dict[str, str]  # names lowercased: HTTP header names are case-insensitive
    request: ExportTraceServiceRequest


def _decode(body: bytes, encoding: str, content_type: str) -> ExportTraceServiceRequest:
    if encoding == "gzip":
        body = gzip.decompress(body)
    elif encoding == "deflate":
        body = zlib.decompress(body)
    if content_type == "application/json":
        return otlp_json.decode(body, ExportTraceServiceRequest)
    return ExportTraceServiceRequest.FromString(body)


class RecordingSink:
    """OTLP/HTTP traces endpoint on a free 127.0.0.1 port; `received` lists what came in."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _export(self, request: web.Request) -> web.Response:
        body = await request.read()
        decoded = _decode(body, request.headers.get("Content-Encoding", ""), request.content_type)
        self.received.append(Received({k.lower(): v for k, v in request.headers.items()}, decoded))
        if request.content_type == "application/json":
            return web.Response(body=otlp_json.encode(ExportTraceServiceResponse()), content_type="application/json")
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 << 20, handler_args={"auto_decompress": False})
        app.router.add_post("/v1/traces", self._export)
        app.router.add_post("/api/public/otel/v1/traces", self._export)  # where the Langfuse SDK sends
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> "RecordingSink":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def requests(self) -> list[ExportTraceServiceRequest]:
        return [item.request for item in self.received]

    def __enter__(self) -> "RecordingSink":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

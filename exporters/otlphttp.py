"""`otlphttp`: send spans over OTLP/HTTP (e.g. to Grafana Tempo's 4318).

Unchanged batches go out as the bytes that came in (`encoding: proto`), gzip-compressed by
default. What it promises (on top of the exporter helper's queue and retry):
- 429, 502, 503, 504 and connection failures are retried, never sooner than `Retry-After`;
- any other 4xx/5xx is permanent: counted under `http_<status>` with the server's message;
- a 2xx with `partial_success.rejected_spans` counts those spans as failed
  (`partial_success`) and logs the server's message; the rest are sent.
Tempo 2.4+ may still discard a trace after a success reply (per-tenant limits): only
reading it back proves storage.
"""
from __future__ import annotations

import gzip
import zlib
from typing import Literal

import aiohttp
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from pydantic import Field, model_validator

from exporters.helper import ExporterHelperConfig, QueuedExporter
from exporters.helper.http import raise_for_status
from pipeline import otlp_json
from pipeline.component import Factory, Kind, Settings, Signal
from pipeline.config.tls import TlsClientConfig
from pipeline.config.units import Duration
from pipeline.errors import RetryableError
from pipeline.pdata.traces import Traces


class OtlpHttpConfig(ExporterHelperConfig):
    endpoint: str | None = None          # base URL; /v1/traces is appended
    traces_endpoint: str | None = None   # full URL, wins over endpoint
    headers: dict[str, str] = Field(default_factory=dict)
    compression: Literal["gzip", "deflate", "zstd", "none", ""] = "gzip"
    encoding: Literal["proto", "json"] = "proto"
    timeout: Duration = 30.0
    tls: TlsClientConfig = TlsClientConfig()

    @model_validator(mode="after")
    def _needs_endpoint(self) -> "OtlpHttpConfig":
        url = self.traces_url
        if not url:
            raise ValueError("set endpoint (base URL) or traces_endpoint")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint {url!r} must start with http:// or https://")
        return self

    @property
    def traces_url(self) -> str | None:
        if self.traces_endpoint:
            return self.traces_endpoint
        return self.endpoint.rstrip("/") + "/v1/traces" if self.endpoint else None


class OtlpHttpExporter(QueuedExporter[Traces]):
    def __init__(self, settings: Settings, config: OtlpHttpConfig) -> None:
        super().__init__(settings, config)
        self.http_config = config
        self.url = config.traces_url or ""
        self.content_type = "application/json" if config.encoding == "json" else "application/x-protobuf"
        self._session: aiohttp.ClientSession | None = None

    async def start_client(self) -> None:
        ssl_context = self.http_config.tls.ssl_context() if self.url.startswith("https://") else None
        connector = aiohttp.TCPConnector(ssl=ssl_context if ssl_context else False, limit=0)
        self._session = aiohttp.ClientSession(connector=connector)

    async def stop_client(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _body(self, batch: Traces) -> tuple[bytes, dict[str, str]]:
        body = otlp_json.encode(batch.message) if self.http_config.encoding == "json" else batch.wire()
        headers = {**self.http_config.headers, "Content-Type": self.content_type}
        compression = self.http_config.compression
        if compression == "gzip":
            body, headers["Content-Encoding"] = gzip.compress(body, compresslevel=6), "gzip"
        elif compression == "deflate":
            body, headers["Content-Encoding"] = zlib.compress(body), "deflate"
        elif compression == "zstd":
            import zstandard

            body, headers["Content-Encoding"] = zstandard.ZstdCompressor().compress(body), "zstd"
        return body, headers

    async def send(self, batch: Traces) -> int | None:
        assert self._session is not None
        body, headers = self._body(batch)
        try:
            async with self._session.post(self.url, data=body, headers=headers) as response:
                payload = await response.read()
                return self._outcome(response, payload)
        except aiohttp.ClientError as exc:
            raise RetryableError(f"cannot reach {self.url}: {exc}", error_type="connection") from exc

    def _outcome(self, response: aiohttp.ClientResponse, payload: bytes) -> int | None:
        if 200 <= response.status < 300:
            return self._partial(response, payload)
        raise_for_status(response.status, self._status_message(response, payload),
                         response.headers.get("Retry-After"))
        return None

    def _partial(self, response: aiohttp.ClientResponse, payload: bytes) -> int | None:
        if not payload:
            return None
        try:
            if response.content_type == "application/json":
                reply = otlp_json.decode(payload, ExportTraceServiceResponse)
            else:
                reply = ExportTraceServiceResponse.FromString(payload)
        except (DecodeError, otlp_json.JsonDecodeError):
            return None
        rejected = reply.partial_success.rejected_spans
        if rejected:
            self.log.warning("the destination rejected some spans", extra={"kv": {
                "rejected": rejected, "error": reply.partial_success.error_message}})
        return rejected

    @staticmethod
    def _status_message(response: aiohttp.ClientResponse, payload: bytes) -> str:
        try:
            if response.content_type == "application/x-protobuf":
                return status_pb2.Status.FromString(payload).message or response.reason or ""
        except DecodeError:
            pass
        return payload[:500].decode("utf-8", "replace") or (response.reason or "")


factory = Factory("otlphttp", Kind.EXPORTER, OtlpHttpConfig, OtlpHttpExporter,
                  signals=frozenset({Signal.TRACES}), description="OTLP/HTTP (e.g. Grafana Tempo)")

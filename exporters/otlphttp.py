"""`otlphttp`: send spans over OTLP/HTTP (e.g. to Grafana Tempo's 4318), and logs.

In a `logs` pipeline it posts to `logs_endpoint`, or `endpoint` + `/v1/logs` (Loki 3 takes
OTLP logs there, under its own `/otlp` base), by the same rules.

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
from pydantic import Field, model_validator

from exporters.helper import ExporterHelperConfig, QueuedExporter
from exporters.helper.http import raise_for_status
from exporters.helper.otlp_signals import OtlpSignal, otlp_signal
from pipeline import otlp_json
from pipeline.component import Factory, Kind, Settings, Signal
from pipeline.config.tls import TlsClientConfig
from pipeline.config.units import Duration
from pipeline.errors import RetryableError
from pipeline.pdata.batch import OtlpBatch


class OtlpHttpConfig(ExporterHelperConfig):
    endpoint: str | None = None          # base URL; /v1/traces (/v1/logs) is appended
    traces_endpoint: str | None = None   # full URL, wins over endpoint
    logs_endpoint: str | None = None     # full URL for a logs pipeline, wins over endpoint
    headers: dict[str, str] = Field(default_factory=dict)
    compression: Literal["gzip", "deflate", "zstd", "none", ""] = "gzip"
    encoding: Literal["proto", "json"] = "proto"
    timeout: Duration = 30.0
    tls: TlsClientConfig = TlsClientConfig()

    @model_validator(mode="after")
    def _needs_endpoint(self) -> "OtlpHttpConfig":
        urls = [url for url in (self.endpoint, self.traces_endpoint, self.logs_endpoint) if url]
        if not urls:
            raise ValueError("set endpoint (base URL), traces_endpoint or logs_endpoint")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"endpoint {url!r} must start with http:// or https://")
        return self

    def url_for(self, signal: OtlpSignal) -> str | None:
        """The URL a pipeline of `signal` posts to (None: neither its own endpoint nor a base URL set)."""
        url: str | None = getattr(self, signal.endpoint_key)
        if url:
            return url
        return self.endpoint.rstrip("/") + signal.http_path if self.endpoint else None


class OtlpHttpExporter(QueuedExporter[OtlpBatch]):
    def __init__(self, settings: Settings, config: OtlpHttpConfig) -> None:
        super().__init__(settings, config)
        self.http_config = config
        self.otlp = otlp_signal(settings.signal)
        url = config.url_for(self.otlp)
        if url is None:
            signal = (settings.signal or Signal.TRACES).value
            raise ValueError(f"exporter {settings.id}: a {signal} pipeline needs endpoint (base URL) or "
                             f"{self.otlp.endpoint_key}")
        self.url = url
        self.content_type = "application/json" if config.encoding == "json" else "application/x-protobuf"
        self._session: aiohttp.ClientSession | None = None

    async def start_client(self) -> None:
        ssl_context = self.http_config.tls.ssl_context() if self.url.startswith("https://") else None
        connector = aiohttp.TCPConnector(ssl=ssl_context if ssl_context else False, limit=0)
        self._session = aiohttp.ClientSession(connector=connector)

    async def stop_client(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _body(self, batch: OtlpBatch) -> tuple[bytes, dict[str, str]]:
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

    async def send(self, batch: OtlpBatch) -> int | None:
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
                reply = otlp_json.decode(payload, self.otlp.response_type)
            else:
                reply = self.otlp.response_type.FromString(payload)
        except (DecodeError, otlp_json.JsonDecodeError):
            return None
        rejected, message = self.otlp.rejected(reply)
        if rejected:
            self.log.warning(f"the destination rejected some {self.otlp.items}", extra={"kv": {
                "rejected": rejected, "error": message}})
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
                  signals=frozenset({Signal.TRACES, Signal.LOGS}),
                  description="OTLP/HTTP traces and logs (e.g. Grafana Tempo, Jaeger, Loki 3)")

"""`otlp`: send spans over OTLP/gRPC (e.g. to Grafana Tempo's 4317), and logs (LogsService).

In a `logs` pipeline it calls the LogsService instead of the TraceService, by the same rules
(rejected_log_records counted as failed).

Unchanged batches go out as the bytes that came in, gzip-compressed by default, with
`headers` as gRPC metadata (`X-Scope-OrgID` for multi-tenant Tempo). What it promises (on
top of the exporter helper's queue and retry), following the OTLP spec:
- UNAVAILABLE, CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, DATA_LOSS are retried;
  RESOURCE_EXHAUSTED only when the server sent RetryInfo (Tempo's overload answer); the
  RetryInfo delay is honoured;
- every other code is permanent: counted under `grpc_<code>` with the server's message;
- `partial_success.rejected_spans` are counted as failed (`partial_success`) and logged.
"""
from __future__ import annotations

from typing import Literal

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from pydantic import Field, field_validator

from exporters.helper import ExporterHelperConfig, QueuedExporter
from exporters.helper.otlp_signals import otlp_signal
from pipeline.component import Factory, Kind, Settings, Signal
from pipeline.config.tls import TlsClientConfig
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.batch import OtlpBatch

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.DATA_LOSS}


class OtlpGrpcConfig(ExporterHelperConfig):
    endpoint: str
    headers: dict[str, str] = Field(default_factory=dict)
    compression: Literal["gzip", "none", ""] = "gzip"
    tls: TlsClientConfig = TlsClientConfig()

    @field_validator("endpoint")
    @classmethod
    def _target(cls, value: str) -> str:
        target = value.removeprefix("http://").removeprefix("https://").rstrip("/")
        if ":" not in target:
            raise ValueError(f"endpoint {value!r} must be host:port")
        return value


def retry_info_delay(error: grpc.aio.AioRpcError) -> float | None:
    """The RetryInfo delay from `grpc-status-details-bin`, if the server sent one."""
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            return None
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


class OtlpGrpcExporter(QueuedExporter[OtlpBatch]):
    def __init__(self, settings: Settings, config: OtlpGrpcConfig) -> None:
        super().__init__(settings, config)
        self.grpc_config = config
        self.otlp = otlp_signal(settings.signal)
        self.metadata = tuple((k.lower(), v) for k, v in config.headers.items())
        self._channel: grpc.aio.Channel | None = None
        self._export = None

    async def start_client(self) -> None:
        endpoint = self.grpc_config.endpoint
        target = endpoint.removeprefix("http://").removeprefix("https://").rstrip("/")
        insecure = self.grpc_config.tls.insecure or endpoint.startswith("http://")
        gzip = self.grpc_config.compression == "gzip"
        compression = grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression
        options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
        if insecure:
            self._channel = grpc.aio.insecure_channel(target, options=options, compression=compression)
        else:
            self._channel = grpc.aio.secure_channel(target, self.grpc_config.tls.grpc_credentials(),
                                                    options=options, compression=compression)
        self._export = self._channel.unary_unary(self.otlp.grpc_method)

    async def stop_client(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    async def send(self, batch: OtlpBatch) -> int | None:
        assert self._export is not None
        try:
            reply = await self._export(batch.wire(), metadata=self.metadata, timeout=self.grpc_config.timeout or None)
        except grpc.aio.AioRpcError as error:
            raise self._classify(error) from error
        rejected, message = self.otlp.rejected(self.otlp.response_type.FromString(reply))
        if rejected:
            self.log.warning(f"the destination rejected some {self.otlp.items}", extra={"kv": {
                "rejected": rejected, "error": message}})
        return rejected

    @staticmethod
    def _classify(error: grpc.aio.AioRpcError) -> Exception:
        code = error.code()
        message = f"{code.name}: {error.details()}"
        delay = retry_info_delay(error)
        if code in RETRYABLE or (code == grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None):
            return RetryableError(message, delay, error_type=f"grpc_{code.name.lower()}")
        return PermanentError(message, error_type=f"grpc_{code.name.lower()}")


factory = Factory("otlp", Kind.EXPORTER, OtlpGrpcConfig, OtlpGrpcExporter,
                  signals=frozenset({Signal.TRACES, Signal.LOGS}),
                  description="OTLP/gRPC traces and logs (e.g. Grafana Tempo, Jaeger, Loki 3)")

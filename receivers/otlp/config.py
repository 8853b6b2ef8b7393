"""Config of the `otlp` receiver, with otelcol's keys (and the spec's 64 MiB size limit)."""
from __future__ import annotations

from typing import Any

from pydantic import Field, PositiveInt, model_validator

from pipeline.component import StrictConfig
from pipeline.config.tls import TlsServerConfig
from pipeline.config.units import ByteSize
from pipeline.netaddr import Endpoint


class AuthConfig(StrictConfig):
    authenticator: str  # the id of an extension such as bearertokenauth


# SO_REUSEPORT: several processes listen on one address and the kernel spreads connections
# over them. `service.workers` sets it in each worker (pipeline/workers.py); rarely set by hand.
ReusePort = bool


class GrpcConfig(StrictConfig):
    endpoint: Endpoint = "localhost:4317"
    reuse_port: ReusePort = False
    max_recv_msg_size_mib: PositiveInt = 64
    tls: TlsServerConfig | None = None
    auth: AuthConfig | None = None


class HttpConfig(StrictConfig):
    endpoint: Endpoint = "localhost:4318"
    reuse_port: ReusePort = False
    max_request_body_size: ByteSize = 64 * 1024 * 1024
    traces_url_path: str = "/v1/traces"
    # More paths that take traces too. Langfuse's SDK (v3+) exports OTLP/HTTP to its server's
    # /api/public/otel/v1/traces: with this default, a Langfuse client pointed at the daemon as
    # its host works unchanged. [] serves traces on traces_url_path only.
    traces_url_aliases: tuple[str, ...] = ("/api/public/otel/v1/traces",)
    metrics_url_path: str = "/v1/metrics"
    logs_url_path: str = "/v1/logs"
    tls: TlsServerConfig | None = None
    auth: AuthConfig | None = None


class Protocols(StrictConfig):
    grpc: GrpcConfig | None = None
    http: HttpConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_means_defaults(cls, data: Any) -> Any:
        # `grpc:` with no body in YAML turns the protocol on with its defaults, as in otelcol.
        if isinstance(data, dict):
            return {key: ({} if value is None else value) for key, value in data.items()}
        return data


class OtlpReceiverConfig(StrictConfig):
    protocols: Protocols = Field(default_factory=lambda: Protocols(grpc=GrpcConfig(), http=HttpConfig()))

    @model_validator(mode="after")
    def _one_protocol(self) -> "OtlpReceiverConfig":
        if self.protocols.grpc is None and self.protocols.http is None:
            raise ValueError("must specify at least one protocol when using the OTLP receiver (grpc or http)")
        return self

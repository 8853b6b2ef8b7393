"""Config of the `otlp` receiver, with otelcol's keys (and the spec's 64 MiB size limit)."""
from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from pipeline.component import StrictConfig
from pipeline.config.units import ByteSize
from pipeline.netaddr import Endpoint


class TlsServerConfig(StrictConfig):
    cert_file: str
    key_file: str
    client_ca_file: str | None = None  # set for mutual TLS
    min_version: Literal["1.2", "1.3"] = "1.2"

    @field_validator("cert_file", "key_file", "client_ca_file")
    @classmethod
    def _exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"file {value!r} does not exist")
        return value

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_3 if self.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file:
            context.load_verify_locations(self.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def grpc_credentials(self) -> Any:
        import grpc

        key, cert = Path(self.key_file).read_bytes(), Path(self.cert_file).read_bytes()
        root = Path(self.client_ca_file).read_bytes() if self.client_ca_file else None
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=root,
                                           require_client_auth=root is not None)


class GrpcConfig(StrictConfig):
    endpoint: Endpoint = "localhost:4317"
    max_recv_msg_size_mib: PositiveInt = 64
    tls: TlsServerConfig | None = None


class HttpConfig(StrictConfig):
    endpoint: Endpoint = "localhost:4318"
    max_request_body_size: ByteSize = 64 * 1024 * 1024
    traces_url_path: str = "/v1/traces"
    metrics_url_path: str = "/v1/metrics"
    logs_url_path: str = "/v1/logs"
    tls: TlsServerConfig | None = None


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

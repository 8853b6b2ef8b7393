"""TLS settings shared by servers (receivers) and clients (exporters), with otelcol's keys."""
from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator

from pipeline.component import StrictConfig


def _file_exists(value: str | None) -> str | None:
    if value and not Path(value).is_file():
        raise ValueError(f"file {value!r} does not exist")
    return value


def _min_version(version: str) -> ssl.TLSVersion:
    return ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2


class TlsServerConfig(StrictConfig):
    cert_file: str
    key_file: str
    client_ca_file: str | None = None  # set for mutual TLS
    min_version: Literal["1.2", "1.3"] = "1.2"

    _check_files = field_validator("cert_file", "key_file", "client_ca_file")(_file_exists)

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = _min_version(self.min_version)
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


class TlsClientConfig(StrictConfig):
    insecure: bool = False              # gRPC: plaintext connection
    insecure_skip_verify: bool = False  # TLS without checking the server certificate
    ca_file: str | None = None
    cert_file: str | None = None        # client certificate for mutual TLS
    key_file: str | None = None
    min_version: Literal["1.2", "1.3"] = "1.2"

    _check_files = field_validator("ca_file", "cert_file", "key_file")(_file_exists)

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        context.minimum_version = _min_version(self.min_version)
        if self.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file and self.key_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def grpc_credentials(self) -> Any:
        import grpc

        def read(path: str | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return grpc.ssl_channel_credentials(read(self.ca_file), read(self.key_file), read(self.cert_file))

"""Parse `host:port` endpoints as otelcol writes them (`localhost:4317`, `:4317`, `[::1]:4317`)."""
from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator


def split_host_port(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"invalid endpoint {endpoint!r}: expected host:port")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def validate_endpoint(endpoint: str) -> str:
    split_host_port(endpoint)
    return endpoint


Endpoint = Annotated[str, AfterValidator(validate_endpoint)]


def validate_http_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"endpoint {url!r} must start with http:// or https://")
    return url


HttpUrl = Annotated[str, AfterValidator(validate_http_url)]

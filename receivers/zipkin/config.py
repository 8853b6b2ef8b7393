"""Config of the `zipkin` receiver, with otelcol's keys (`endpoint`, `parse_string_tags`, `tls`)."""
from __future__ import annotations

from pipeline.component import StrictConfig
from pipeline.config.tls import TlsServerConfig
from pipeline.config.units import ByteSize
from pipeline.netaddr import Endpoint


class ZipkinReceiverConfig(StrictConfig):
    endpoint: Endpoint = "localhost:9411"
    # Tags are strings on the wire; with this on, "42", "1.5" and "true" become int, double
    # and bool attributes (otelcol's option of the same name, off by default there too).
    parse_string_tags: bool = False
    # Cap on the (decompressed) body; a larger one is answered 413 and never inflated past it.
    max_request_body_size: ByteSize = 20 * 1024 * 1024
    tls: TlsServerConfig | None = None  # HTTPS on `endpoint` (plain HTTP is then refused there)

"""`otlp` receiver: OTLP over gRPC (default localhost:4317) and HTTP (default localhost:4318).

Traces, metrics and logs, as otelcol's: the gRPC TraceService, MetricsService and
LogsService, and HTTP `traces_url_path`, `metrics_url_path` and `logs_url_path`
(`/v1/traces`, `/v1/metrics`, `/v1/logs`), protobuf or JSON. Every signal is answered and
refused by the same rules; for logs a record whose trace or span id has the wrong length is
refused alone through partial_success (`rejected_log_records`), and the counters are
`otelcol_receiver_{accepted,refused,failed}_log_records_total`.

What it promises: a request is answered OK only after every pipeline it feeds has taken
the batch (into a processor buffer or an exporter queue). When a stage refuses (full
queue, memory limit) the client gets a retryable answer with a retry hint and nothing is
counted as accepted; invalid spans are refused individually through partial_success; bad
input gets 400 / INVALID_ARGUMENT, oversize 413 / RESOURCE_EXHAUSTED. Every refusal is
counted (`otelcol_receiver_refused_spans_total`, `..._failed_spans_total`,
`agentdbg_receiver_rejected_requests_total`). On shutdown it stops taking new requests and
lets those in progress finish.
"""
from __future__ import annotations

from pipeline.component import Consumer, Factory, Kind, Receiver, Settings, Signal
from pipeline.host import Host
from receivers.otlp.config import OtlpReceiverConfig
from receivers.otlp.grpc_server import GrpcTransport
from receivers.otlp.http_server import HttpTransport
from receivers.otlp.ingest import Ingest
from receivers.otlp.signals import SPECS


class OtlpReceiver(Receiver):
    def __init__(self, settings: Settings, config: OtlpReceiverConfig) -> None:
        super().__init__(settings)
        self.config = config
        self.transports: list[GrpcTransport | HttpTransport] = []
        protocols = config.protocols
        if protocols.grpc is not None:
            ingests = {s: Ingest(self.id, "grpc", spec) for s, spec in SPECS.items()}
            self.transports.append(GrpcTransport(protocols.grpc, ingests, self._consumer_of))
        if protocols.http is not None:
            ingests = {s: Ingest(self.id, "http", spec) for s, spec in SPECS.items()}
            self.transports.append(HttpTransport(protocols.http, ingests, self._consumer_of))

    def _consumer_of(self, signal: Signal) -> Consumer | None:
        return self.consumers.get(signal)

    async def start(self, host: Host) -> None:
        for transport in self.transports:
            if transport.config.auth is not None:
                transport.authenticator = host.authenticator(transport.config.auth.authenticator)
            await transport.start()
        self.log.info("receiver listening", extra={"kv": {
            "grpc": self.config.protocols.grpc.endpoint if self.config.protocols.grpc else "off",
            "http": self.config.protocols.http.endpoint if self.config.protocols.http else "off"}})

    async def shutdown(self, deadline: float | None = None) -> None:
        for transport in self.transports:
            await transport.stop()


factory = Factory("otlp", Kind.RECEIVER, OtlpReceiverConfig, OtlpReceiver,
                  signals=frozenset({Signal.TRACES, Signal.METRICS, Signal.LOGS}),
                  description="OTLP traces, metrics and logs over gRPC and HTTP (protobuf, JSON)")

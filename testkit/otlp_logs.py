"""Logs from the OpenTelemetry Python SDK (`opentelemetry.sdk._logs` and the OTLP log exporters),
and what each record should look like wherever it comes out.

`send_sdk_logs` emits `count` records through a real `LoggerProvider` and OTLP log exporter
(gRPC or HTTP/protobuf) to a daemon; every other record is emitted inside a span of a real
`TracerProvider` (exported to the same daemon, so the logs' trace ids have spans to join),
the rest carry no trace context. It returns the records as sent (`SentLog`), for tests to
compare record by record with what a store, a topic, a file or a backend holds;
`logs_of_request` puts an OTLP logs request in the same form, and `read_logs` reads a Kafka
topic of OTLP logs messages into it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer
from opentelemetry._logs import SeverityNumber
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from pipeline import otlp_json
from pipeline.pdata.anyvalue import any_value_text, attribute_map

SCOPE = "testkit.logs"
SEVERITIES = ((SeverityNumber.INFO, "INFO"), (SeverityNumber.WARN, "WARN"), (SeverityNumber.ERROR, "ERROR"))


@dataclass(frozen=True)
class SentLog:
    """One record as the SDK was asked to send it (ids in lowercase hex, "" when none)."""

    body: str
    severity_text: str
    severity_number: int
    timestamp_ns: int
    attributes: dict[str, str]
    trace_id: str = ""
    span_id: str = ""
    service: str = ""
    resource: dict[str, str] = field(default_factory=dict)

    def key(self) -> tuple:
        """What every output must keep of the record, in one comparable tuple."""
        return (self.body, self.severity_text, self.severity_number, self.timestamp_ns, self.trace_id,
                self.span_id, self.service, tuple(sorted(self.attributes.items())))


def exporters_for(protocol: str, endpoint: str):
    """The SDK's OTLP log and span exporters for `protocol` ("grpc" or "http") at host:port."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPLogExporter(endpoint=endpoint, insecure=True), OTLPSpanExporter(endpoint=endpoint, insecure=True)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

    return (HttpLogExporter(endpoint=f"http://{endpoint}/v1/logs"),
            HttpSpanExporter(endpoint=f"http://{endpoint}/v1/traces"))


def send_sdk_logs(protocol: str, endpoint: str, count: int = 6, service: str = "logs-svc",
                  first_ns: int | None = None) -> list[SentLog]:
    """Emit `count` records (every other one inside a span) and flush; the records as sent.

    Times start at `first_ns` (default: now, so that a store's retention keeps them), 1 ms apart."""
    first_ns = time.time_ns() if first_ns is None else first_ns
    resource = Resource.create({"service.name": service, "deployment.environment": "test"})
    log_exporter, span_exporter = exporters_for(protocol, endpoint)
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
    logger, tracer = logger_provider.get_logger(SCOPE, "1.0"), tracer_provider.get_tracer(SCOPE)
    sent: list[SentLog] = []
    try:
        for index in range(count):
            number, text = SEVERITIES[index % len(SEVERITIES)]
            attributes = {"index": index, "user.id": f"user-{index % 2}"}
            fields = dict(body=f"record {index} of {service}", severity_text=text, severity_number=number.value,
                          timestamp_ns=first_ns + index * 1_000_000,
                          attributes={key: str(value) for key, value in attributes.items()},
                          service=service, resource={"service.name": service, "deployment.environment": "test"})
            emit = dict(timestamp=fields["timestamp_ns"], severity_number=number, severity_text=text,
                        body=fields["body"], attributes=attributes)
            if index % 2 == 0:
                with tracer.start_as_current_span(f"step {index}") as span:
                    logger.emit(**emit)
                    context = span.get_span_context()
                    fields.update(trace_id=f"{context.trace_id:032x}", span_id=f"{context.span_id:016x}")
            else:
                logger.emit(**emit)
            sent.append(SentLog(**fields))
        logger_provider.force_flush()
    finally:
        logger_provider.shutdown()
        tracer_provider.shutdown()
    return sent


def logs_of_request(request: ExportLogsServiceRequest) -> list[SentLog]:
    """The records of an OTLP logs request, in the form `send_sdk_logs` returns (for comparing)."""
    out = []
    for rl in request.resource_logs:
        resource = attribute_map(rl.resource.attributes)
        for scope in rl.scope_logs:
            for record in scope.log_records:
                out.append(SentLog(any_value_text(record.body), record.severity_text, record.severity_number,
                                   record.time_unix_nano, attribute_map(record.attributes), record.trace_id.hex(),
                                   record.span_id.hex(), resource.get("service.name", ""), resource))
    return out


def keys(logs: list[SentLog]) -> list[tuple]:
    """The comparable form of records, sorted (outputs need not keep the order of requests)."""
    return sorted(log.key() for log in logs)


async def read_logs(bootstrap: str, topic: str, want: int, json: bool, timeout: float = 60) -> list[SentLog]:
    """The records of the OTLP logs messages on a Kafka topic, read from the start until `want` arrived."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    logs: list[SentLog] = []
    deadline = time.monotonic() + timeout
    try:
        while len(logs) < want and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    request = (otlp_json.decode(record.value, ExportLogsServiceRequest) if json
                               else ExportLogsServiceRequest.FromString(record.value))
                    logs.extend(logs_of_request(request))
    finally:
        await consumer.stop()
    return logs

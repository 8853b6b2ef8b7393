"""What differs per OTLP signal: the request and response messages, the batch wrapper,
how items are counted, and the per-item checks that can reject part of a request."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from prometheus_client import Counter

from pipeline.component import Signal
from pipeline.pdata.logs import Logs, salvage_log_records
from pipeline.pdata.metrics import Metrics
from pipeline.pdata.traces import Traces
from pipeline.telemetry import metrics


@dataclass(frozen=True)
class SignalSpec:
    signal: Signal
    service: str                   # gRPC service name
    request_type: type[Message]
    response_type: (type[ExportTraceServiceResponse] | type[ExportMetricsServiceResponse]
                    | type[ExportLogsServiceResponse])
    partial_field: str             # rejected_<items> in partial_success
    make_batch: Callable[[Any, bytes | None, float], Any]
    drop_invalid: Callable[[Any], tuple[int, str]]
    counters: tuple[Counter, Counter, Counter]  # accepted, refused, failed
    # A second try at protobuf bytes the decoder refused whole: (request, items left out, why).
    salvage: Callable[[bytes], tuple[Any, int, str]] | None = None

    def parse(self, wire: bytes) -> tuple[Any, int, str]:
        """The request in `wire`, with how many items were refused while decoding it and why.
        Raises the decoder's DecodeError when the request cannot be decoded (or salvaged)."""
        try:
            return self.request_type.FromString(wire), 0, ""
        except DecodeError as error:
            if self.salvage is None:
                raise
            try:
                return self.salvage(wire)
            except DecodeError:
                raise error from None


def drop_invalid_spans(request: trace_service_pb2.ExportTraceServiceRequest) -> tuple[int, str]:
    """Remove spans whose ids have the wrong length; return how many and why.

    OTLP requires 16-byte trace ids and 8-byte span ids (parent: 8 bytes or empty). Such
    spans cannot be stored or joined, so they are refused one by one through
    partial_success rather than failing the whole request.
    """
    def bad(spans: Any) -> list[int]:
        return [i for i, s in enumerate(spans)
                if len(s.trace_id) != 16 or len(s.span_id) != 8 or len(s.parent_span_id) not in (0, 8)]

    def why(first: Any) -> str:
        return (f"span {first.name[:64]!r}: trace_id must be 16 bytes, span_id 8 bytes and parent_span_id "
                f"8 bytes or empty (got {len(first.trace_id)}, {len(first.span_id)} and {len(first.parent_span_id)})")

    return drop_bad((scope.spans for rs in request.resource_spans for scope in rs.scope_spans), bad, why)


def drop_bad(groups: Iterable[Any], bad: Callable[[Any], list[int]], why: Callable[[Any], str]) -> tuple[int, str]:
    """Delete from each repeated field of `groups` the items at the indices `bad` finds in it
    (one comprehension a group, so the per-item check stays inline); how many, and `why` of the
    first one refused."""
    rejected, reason = 0, ""
    for items in groups:
        indices = bad(items)
        if indices:
            reason = reason or why(items[indices[0]])
            for index in reversed(indices):
                del items[index]
            rejected += len(indices)
    return rejected, reason


TRACES = SignalSpec(
    signal=Signal.TRACES,
    service="opentelemetry.proto.collector.trace.v1.TraceService",
    request_type=trace_service_pb2.ExportTraceServiceRequest,
    response_type=trace_service_pb2.ExportTraceServiceResponse,
    partial_field="rejected_spans",
    make_batch=lambda message, wire, received_at: Traces(message, wire, None, received_at),
    drop_invalid=drop_invalid_spans,
    counters=(metrics.receiver_accepted_spans, metrics.receiver_refused_spans, metrics.receiver_failed_spans),
)

METRICS = SignalSpec(
    signal=Signal.METRICS,
    service="opentelemetry.proto.collector.metrics.v1.MetricsService",
    request_type=metrics_service_pb2.ExportMetricsServiceRequest,
    response_type=metrics_service_pb2.ExportMetricsServiceResponse,
    partial_field="rejected_data_points",
    make_batch=lambda message, wire, received_at: Metrics(message, wire, None, received_at),
    drop_invalid=lambda message: (0, ""),
    counters=(metrics.receiver_accepted_metric_points, metrics.receiver_refused_metric_points,
              metrics.receiver_failed_metric_points),
)

def drop_invalid_log_records(request: logs_service_pb2.ExportLogsServiceRequest) -> tuple[int, str]:
    """Remove log records whose trace or span id has the wrong length; return how many and why.

    A log record's ids are optional (empty), but when present OTLP requires 16 bytes for the
    trace id and 8 for the span id: a record with other lengths could never be joined with its
    spans, so it is refused alone through partial_success, as spans with bad ids are.
    """
    def bad(records: Any) -> list[int]:
        return [i for i, r in enumerate(records) if len(r.trace_id) not in (0, 16) or len(r.span_id) not in (0, 8)]

    def why(first: Any) -> str:
        return (f"log record: trace_id must be 16 bytes or empty and span_id 8 bytes or empty "
                f"(got {len(first.trace_id)} and {len(first.span_id)})")

    return drop_bad((scope.log_records for rl in request.resource_logs for scope in rl.scope_logs), bad, why)

LOGS = SignalSpec(
    signal=Signal.LOGS,
    service="opentelemetry.proto.collector.logs.v1.LogsService",
    request_type=logs_service_pb2.ExportLogsServiceRequest,
    response_type=logs_service_pb2.ExportLogsServiceResponse,
    partial_field="rejected_log_records",
    make_batch=lambda message, wire, received_at: Logs(message, wire, None, received_at),
    drop_invalid=drop_invalid_log_records,
    counters=(metrics.receiver_accepted_log_records, metrics.receiver_refused_log_records,
              metrics.receiver_failed_log_records),
    salvage=salvage_log_records,
)

SPECS = {TRACES.signal: TRACES, METRICS.signal: METRICS, LOGS.signal: LOGS}

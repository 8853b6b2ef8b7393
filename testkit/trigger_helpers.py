"""Helpers for the trigger detector tests.

Unit tests: build OTLP trace and metrics batches by hand with controlled timestamps
(`span`, `resource`, `traces`, `gauge`, `sum_metric`, `metrics`), run a detector's hot path
and evaluation with an explicit `now`, and look at what it observed (`observe_all`,
`fired`).

Integration tests: the daemon overlay that routes traces and metrics into the `triggers`
connector and its events into a file (`triggers_overlay`), reading those events back
(`read_events`, `wait_for_events`), and OpenTelemetry SDK providers playing agents
(`sdk_tracer`, `sdk_meter`, and `SdkAgent`: spans with explicit times, flushed on demand).
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Callable, Iterable

from google.protobuf import json_format
from opentelemetry import trace as trace_api
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric, NumberDataPoint
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, Status, TracesData
from opentelemetry.trace import SpanKind, StatusCode

from connectors.triggers.episodes import EpisodeTracker
from connectors.triggers.event import Observation
from pipeline.pdata.logs import Logs
from pipeline.pdata.metrics import Metrics
from pipeline.pdata.traces import Traces

T0 = 1_780_000_000.0  # a fixed wall-clock second (2026-05-28) for unit tests
INTERNAL, SERVER, CLIENT = Span.SPAN_KIND_INTERNAL, Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT
_span_ids = itertools.count(1)


# -- OTLP building blocks ------------------------------------------------------------------------
def value(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    return AnyValue(string_value=str(v))


def attributes(values: dict[str, Any] | None) -> list[KeyValue]:
    return [KeyValue(key=k, value=value(v)) for k, v in (values or {}).items()]


def trace_id(n: int) -> bytes:
    return n.to_bytes(16, "big")


def new_span_id() -> bytes:
    return next(_span_ids).to_bytes(8, "big")


def span(name: str = "op", *, trace: int = 1, span_id: bytes | None = None, parent: bytes = b"",
         start: float = T0, duration: float = 0.1, end: float | None = None, kind: int = INTERNAL,
         error: bool = False, message: str = "", attrs: dict[str, Any] | None = None,
         events: Iterable[tuple[str, dict[str, Any]]] = ()) -> Span:
    """A span; times are float seconds, converted to ns."""
    out = Span(trace_id=trace_id(trace), span_id=span_id or new_span_id(), parent_span_id=parent, name=name,
               kind=kind, start_time_unix_nano=int(start * 1e9),
               end_time_unix_nano=int((end if end is not None else start + duration) * 1e9))
    out.attributes.extend(attributes(attrs))
    if error or message:
        out.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR if error else Status.STATUS_CODE_UNSET,
                                   message=message))
    for event_name, event_attrs in events:
        event = out.events.add(name=event_name, time_unix_nano=out.end_time_unix_nano)
        event.attributes.extend(attributes(event_attrs))
    return out


def resource(service: str, spans: Iterable[Span], **resource_attrs: Any) -> ResourceSpans:
    rs = ResourceSpans()
    rs.resource.attributes.extend(attributes({"service.name": service, **resource_attrs}))
    scope = rs.scope_spans.add()
    scope.scope.name = "tests"
    scope.spans.extend(spans)
    return rs


def traces(*resources: ResourceSpans, received_at: float = T0) -> Traces:
    request = ExportTraceServiceRequest()
    request.resource_spans.extend(resources)
    return Traces.from_message(request, received_at=received_at)


def _points(points: Iterable[tuple[float, float] | tuple[float, float, dict[str, Any]]],
            start: float | None = None) -> list[NumberDataPoint]:
    out = []
    for point in points:
        t, v = point[0], point[1]
        p = NumberDataPoint(time_unix_nano=int(t * 1e9))
        if start is not None:
            p.start_time_unix_nano = int(start * 1e9)
        if isinstance(v, int):
            p.as_int = v
        else:
            p.as_double = v
        if len(point) > 2:
            p.attributes.extend(attributes(point[2]))  # type: ignore[misc]
        out.append(p)
    return out


def gauge(name: str, points: Iterable, unit: str = "By") -> Metric:
    metric = Metric(name=name, unit=unit)
    metric.gauge.data_points.extend(_points(points))
    return metric


def sum_metric(name: str, points: Iterable, unit: str = "By", monotonic: bool = False,
               delta: bool = False, start: float | None = None) -> Metric:
    metric = Metric(name=name, unit=unit)
    metric.sum.is_monotonic = monotonic
    metric.sum.aggregation_temporality = (AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA if delta
                                          else AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE)
    metric.sum.data_points.extend(_points(points, start))
    return metric


def metrics(service: str, *items: Metric, received_at: float = T0, **resource_attrs: Any) -> Metrics:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(attributes({"service.name": service, **resource_attrs}))
    scope = rm.scope_metrics.add()
    scope.metrics.extend(items)
    return Metrics.from_message(request, received_at=received_at)


def metrics_request(service: str, *items: Metric, **resource_attrs: Any) -> bytes:
    """Wire bytes of an ExportMetricsServiceRequest (for posting by hand)."""
    return metrics(service, *items, **resource_attrs).wire()


# -- running detectors ---------------------------------------------------------------------------
def observe_all(detector: Any, batches: Iterable[Traces | Metrics], keys: Iterable[str] | None = None) -> None:
    """What the connector does per batch: pre-fetch the attribute keys, then the hot path."""
    for batch in batches:
        if isinstance(batch, Metrics):
            detector.observe_metrics(batch)
            continue
        batch.columns.attributes(tuple(keys) if keys is not None else detector.attribute_keys)
        detector.observe(batch)


def fired(detector: Any, now: float, tracker: EpisodeTracker | None = None) -> list[dict[str, Any]]:
    """Evaluate at `now` and return the firing/resolved documents an episode tracker emits."""
    tracker = tracker or EpisodeTracker("triggers", resolve_after=60.0, resolve_ratio=0.8)
    return tracker.update(detector.kind, detector.evaluate(now), now)


def firing(observations: list[Observation]) -> list[Observation]:
    """The observations that would open an episode."""
    return [o for o in observations if (o.firing if o.firing is not None else o.observed > o.threshold)]


# -- integration: daemon, events, SDK ------------------------------------------------------------
def heartbeat_record(open_span: Span, event: str, service: str, now: float) -> LogRecord:
    """The log record partial-span-processor 0.0.9 exports for an open span (its get_log_data):
    the span so far as OTLP/JSON TracesData with the ids rewritten as hex, and the attributes
    partial.event, partial.frequency (heartbeats only, 1000ms here) and partial.body.type."""
    data = TracesData()
    data.resource_spans.append(resource(service, [open_span]))
    document = json.loads(json_format.MessageToJson(data))
    for rs in document["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                s["traceId"], s["spanId"] = open_span.trace_id.hex(), open_span.span_id.hex()
                if open_span.parent_span_id:
                    s["parentSpanId"] = open_span.parent_span_id.hex()
    attributes = {"partial.event": event, "partial.body.type": "json/v1"}
    if event == "heartbeat":
        attributes["partial.frequency"] = "1000ms"
    record = LogRecord(time_unix_nano=int(now * 1e9), observed_time_unix_nano=int(now * 1e9),
                       trace_id=open_span.trace_id, span_id=open_span.span_id, severity_text="INFO",
                       severity_number=9, body=AnyValue(string_value=json.dumps(document, separators=(",", ":"))))
    record.attributes.extend(KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attributes.items())
    return record


def logs(*records: LogRecord, at: float) -> Logs:
    """A logs batch of `records` (one resource and scope), received at `at`."""
    message = ExportLogsServiceRequest()
    message.resource_logs.add().scope_logs.add().log_records.extend(records)
    return Logs.from_message(message, received_at=at)


def triggers_overlay(triggers_yaml: str) -> str:
    """An overlay for testkit.harness.BASE_CONFIG: traces and metrics → triggers → file events.

    `triggers_yaml` is the body of `connectors: triggers:`, indented by six spaces.
    """
    return f"""
connectors:
  triggers:
{triggers_yaml}
exporters:
  file/events:
    path: "{{dir}}/events.jsonl"
    flush_interval: 50ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [triggers]
    metrics:
      receivers: [otlp]
      exporters: [triggers]
    events:
      receivers: [triggers]
      exporters: [file/events]
"""


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")[:-1]  # a line still being written has no newline yet
    return [json.loads(line) for line in lines if line.strip()]


def wait_for_events(path: Path, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0
                    ) -> list[dict[str, Any]]:
    from testkit.harness import wait_until

    return wait_until(lambda: [e for e in read_events(path) if predicate(e)], timeout=timeout,
                      message=f"a matching trigger event in {path}")


def sdk_tracer(endpoint: str, service: str, **resource_attrs: Any):
    """(provider, tracer) of an OpenTelemetry SDK agent exporting OTLP/HTTP to `endpoint`."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource as SdkResource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=SdkResource.create({"service.name": service, **resource_attrs}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"),
                                                   schedule_delay_millis=50))
    return provider, provider.get_tracer("agentdbg.tests")


def sdk_meter(endpoint: str, service: str, interval_ms: int = 100, **resource_attrs: Any):
    """(provider, meter) of an SDK process exporting OTLP/HTTP metrics every `interval_ms`."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource as SdkResource

    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"),
                                           export_interval_millis=interval_ms)
    provider = MeterProvider(resource=SdkResource.create({"service.name": service, **resource_attrs}),
                             metric_readers=[reader])
    return provider, provider.get_meter("agentdbg.tests")


class SdkAgent:
    """An SDK-instrumented service exporting OTLP/HTTP to `endpoint` (`http://host:port`): spans
    with explicit times, flushed on demand. `shutdown()` when done."""

    def __init__(self, endpoint: str, service: str, **resource: Any) -> None:
        self.provider, self.tracer = sdk_tracer(endpoint, service, **resource)

    def span(self, name: str, start: float, end: float, kind: SpanKind = SpanKind.INTERNAL,
             parent: trace_api.Span | None = None, error: str | None = None, **attributes: Any) -> trace_api.Span:
        context = trace_api.set_span_in_context(parent) if parent is not None else None
        span = self.tracer.start_span(name, context=context, kind=kind, start_time=int(start * 1e9),
                                      attributes=attributes)
        if error is not None:
            span.set_status(trace_api.Status(StatusCode.ERROR, error))
        span.end(end_time=int(end * 1e9))
        return span

    def flush(self) -> None:
        assert self.provider.force_flush(10_000)

    def shutdown(self) -> None:
        self.provider.shutdown()

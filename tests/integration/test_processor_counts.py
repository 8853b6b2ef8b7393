"""Issue 10: the processor helper counts every processor's items in and out.

A daemon runs every processor there is: memory_limiter, redaction, genai and batch on the
traces pipeline, memory_limiter and batch on a metrics pipeline too, safety on the events
pipeline the triggers connector feeds. What its /metrics says each processor took in and handed
on is compared with what the test sent and with what came out at the far end (the spans file,
the metrics file, the trigger events file, the decisions file).
"""
from __future__ import annotations

import json
from pathlib import Path

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

from testkit.harness import BASE_CONFIG, Daemon, metric_value, wait_until

SPAN_PROCESSORS = ["memory_limiter", "redaction", "genai", "batch"]
OVERLAY = """
processors:
  memory_limiter: {check_interval: 1s, limit_mib: 4000, spike_limit_mib: 500}
  redaction: {allow_all_keys: true}
  genai: {}
  batch: {timeout: 50ms, send_batch_size: 100}
  safety:
    state_file: "{dir}/safety.json"
    tick_interval: 100ms
    breakers:
      checkout_api:
        failure_threshold: 1
        timeout: 60s
        fallback: cached_checkout
        match: [{kinds: [error_rate_spike], subject: {service: checkout}}]
connectors:
  triggers:
    evaluation_interval: 100ms
    error_rate_spike: {min_count: 20, window: 3s}
exporters:
  file/spans: {path: "{dir}/spans.jsonl", flush_interval: 50ms}
  file/triggers: {path: "{dir}/triggers.jsonl", flush_interval: 50ms}
  file/decisions: {path: "{dir}/decisions.jsonl", flush_interval: 50ms}
  file/metrics: {path: "{dir}/metrics.jsonl", flush_interval: 50ms}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, redaction, genai, batch]
      exporters: [file/spans, triggers]
    metrics: {receivers: [otlp], processors: [memory_limiter, batch], exporters: [file/metrics]}
    events/triggers: {receivers: [triggers], exporters: [file/triggers]}
    events/safety: {receivers: [triggers], processors: [safety], exporters: [file/decisions]}
"""
SENT = 120


def send_spans(port: int) -> None:
    """`SENT` GenAI spans of service checkout, every other one failed (an error-rate spike),
    some carrying an API key for redaction to mask."""
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True), schedule_delay_millis=50,
        max_export_batch_size=25))
    tracer = provider.get_tracer("checkout-agent")
    for index in range(SENT):
        with tracer.start_as_current_span("chat gpt-4o") as span:
            span.set_attribute("gen_ai.request.model", "gpt-4o")
            span.set_attribute("gen_ai.usage.input_tokens", 10 + index)
            if index % 3 == 0:
                span.set_attribute("note", f"key sk-proj-{index:04d}abcdefghijklmnopqrstuvwxyz0123456789")
            if index % 2 == 0:
                span.set_status(Status(StatusCode.ERROR, "payment provider failed"))
    provider.shutdown()


def send_metrics(port: int) -> None:
    """A counter and a gauge of three series each: six data points, in the one export of shutdown."""
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"127.0.0.1:{port}", insecure=True),
                                           export_interval_millis=60_000)
    provider = MeterProvider(resource=Resource.create({"service.name": "checkout"}), metric_readers=[reader])
    meter = provider.get_meter("checkout-agent")
    calls = meter.create_counter("agent.calls")
    queue = meter.create_gauge("agent.queue_depth")
    for depth, tool in enumerate(("search", "pay", "ship")):
        calls.add(1 + depth, {"tool": tool})
        queue.set(3 * depth, {"tool": tool})
    provider.shutdown()


def points_in(path: Path) -> int:
    """The data points of every metric in an OTLP/JSON lines file."""
    total = 0
    for request in documents_in(path):
        for rm in request.get("resourceMetrics", []):
            for scope in rm.get("scopeMetrics", []):
                for metric in scope.get("metrics", []):
                    total += sum(len(data.get("dataPoints", [])) for key, data in metric.items()
                                 if isinstance(data, dict))
    return total


def spans_in(path: Path) -> int:
    if not path.exists():
        return 0
    requests = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sum(len(scope.get("spans", [])) for request in requests for rs in request.get("resourceSpans", [])
               for scope in rs.get("scopeSpans", []))


def documents_in(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def counts(daemon: Daemon, processor: str, signal: str) -> tuple[float, float]:
    text = daemon.metrics_text()
    labels = {"processor": processor, "otel_signal": signal}
    return (metric_value(text, "otelcol_processor_incoming_items_total", **labels),
            metric_value(text, "otelcol_processor_outgoing_items_total", **labels))


def test_every_processor_counts_what_it_took_in_and_handed_on():
    with Daemon(BASE_CONFIG, overlay=OVERLAY) as daemon:
        send_spans(daemon.ports["grpc"])
        wait_until(lambda: spans_in(daemon.dir / "spans.jsonl") == SENT, timeout=20, message="every span stored")
        for processor in SPAN_PROCESSORS:
            assert counts(daemon, processor, "traces") == (SENT, SENT), processor

        # Metrics: what each processor took in and handed on is what was stored, data point by point.
        send_metrics(daemon.ports["grpc"])

        wait_until(lambda: points_in(daemon.dir / "metrics.jsonl") == 6, timeout=20, message="every data point stored")
        for processor in ("memory_limiter", "batch"):
            assert counts(daemon, processor, "metrics") == (6, 6), processor

        # Safety takes in the trigger events the connector emitted (the same documents the
        # events/triggers pipeline wrote) and hands on the decisions it made.
        wait_until(lambda: documents_in(daemon.dir / "decisions.jsonl"), timeout=20, message="a decision")
        triggers = wait_until(lambda: documents_in(daemon.dir / "triggers.jsonl"), timeout=5, message="a trigger")
        assert any(doc["kind"] == "error_rate_spike" for doc in triggers)

        def safety_agrees() -> bool:
            taken, handed_on = counts(daemon, "safety", "events")
            return (taken, handed_on) == (len(documents_in(daemon.dir / "triggers.jsonl")),
                                          len(documents_in(daemon.dir / "decisions.jsonl")))

        wait_until(safety_agrees, timeout=10, message="safety's counts equal the trigger events and decisions")
        assert {doc["action"] for doc in documents_in(daemon.dir / "decisions.jsonl")} >= {"breaker_open"}

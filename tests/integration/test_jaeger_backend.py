"""Issue 11: Jaeger v2 is the real OTLP backend of the `otlp` and `otlphttp` exporters.

The same exporters serve Grafana Tempo, Jaeger or any OTLP backend; Jaeger v2 (testkit/jaeger.py,
one per test run, built by `make test`) is the one run here. The OpenTelemetry SDK plays two
agents (`agent_run`: two services, two scopes each, every span kind, parent/child, events,
links to a remote trace, Ok/Error/Unset status, attributes of every type) and a third
service's span that continues a remote trace (W3C trace state) with more attributes,
events, links and link attributes than the SDK's limits keep (dropped counts); it sends
them over OTLP/gRPC, one request per service, to a daemon whose traces pipeline is batch (sent at the
run's span count, so the requests leave as one batch: their wire bytes concatenated, the
form Jaeger must parse) → one exporter to Jaeger, in each wire form:
`otlp` (gRPC) with and without gzip, `otlphttp` protobuf with gzip and zstd, `otlphttp`
OTLP/JSON uncompressed. What Jaeger stored is read back through its query API
(`/api/v3/traces/{id}`, raw) and compared with what the SDK recorded, span by span:
- every field a user sees (ids, parent, name, kind, nanosecond times, attributes, events,
  links, status, resource, scope) equals the SDK's own record, each span exactly once;
- each (Resource, Scope, Span) message equals the one the SDK's own OTLP encoder makes of
  that span, field for field, so trace state, flags and dropped counts arrive too;
- the exporter counted every span as sent, in one batch, and none as failed.

A batch a processor changed goes out re-serialised, not as the received bytes: with
`redaction` first in the pipeline, Jaeger holds the masked value (`[REDACTED:sk_api_key]`),
no copy of the secret anywhere in what it stores, and every other field as the SDK sent it.
"""
from __future__ import annotations

import os
from typing import Any

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.span import TraceState

from testkit.harness import BASE_CONFIG, Daemon, batch_processor, component, pipeline_overlay, wait_until
from testkit.jaeger import Jaeger
from testkit.otlp_spans import (T0, agent_run, assert_spans_once, expected_from_sdk, otlp_exporter, raw_spans,
                              span_ids, spans_out)

ROOT_ATTRIBUTES: dict[str, Any] = {
    "gen_ai.agent.name": "planner", "gen_ai.usage.input_tokens": 1200, "gen_ai.request.temperature": 0.25,
    "gen_ai.request.stream": True, "gen_ai.request.stop_sequences": ("\n\n", "END"),
    "gen_ai.request.seeds": (7, 11), "gen_ai.request.top_ps": (0.5, 0.9), "retry.flags": (True, False),
    "text.unicode": "plan ✈ Zürich",
}
# (exporter type, its options): every wire form the two exporters speak.
VARIANTS = {
    "otlp-gzip": ("otlp", {"compression": "gzip"}),
    "otlp-none": ("otlp", {"compression": "none"}),
    "otlphttp-proto-gzip": ("otlphttp", {"compression": "gzip", "encoding": "proto"}),
    "otlphttp-proto-zstd": ("otlphttp", {"compression": "zstd", "encoding": "proto"}),
    "otlphttp-json-none": ("otlphttp", {"compression": "none", "encoding": "json"}),
}


def exporter_to(jaeger: Jaeger, kind: str, options: dict[str, str]) -> str:
    """YAML of one `otlp` (gRPC) or `otlphttp` exporter pointed at Jaeger."""
    if kind == "otlp":
        return component("otlp", endpoint=jaeger.grpc_endpoint, tls="{insecure: true}", **options)
    return component("otlphttp", endpoint=jaeger.http_url, **options)


def _context(trace_state: TraceState) -> SpanContext:
    return SpanContext(int.from_bytes(os.urandom(16), "big"), int.from_bytes(os.urandom(8), "big"), is_remote=True,
                       trace_flags=TraceFlags(TraceFlags.SAMPLED), trace_state=trace_state)


def remote_continuation(namespace: str) -> list[ReadableSpan]:
    """One span continuing a remote trace (trace state), past the SDK's limits (dropped counts;
    the SDK keeps the newest attributes, events and links, so those come last)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "resumed-agent", "service.namespace": namespace}),
                              span_limits=SpanLimits(max_span_attributes=3, max_events=1, max_links=1,
                                                     max_link_attributes=1))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("resume.scope", "3.1", schema_url="https://opentelemetry.io/schemas/1.26.0")
    parent = trace_api.set_span_in_context(NonRecordingSpan(_context(TraceState([("vendor", "x1"), ("rojo", "00")]))))
    span = tracer.start_span(
        "invoke_agent resumed", context=parent, kind=SpanKind.SERVER, start_time=T0 + 7,
        attributes={"dropped.1": 1, "dropped.2": 2, "gen_ai.agent.name": "resumed", "empty": "", "negative": -(2**62)},
        links=[Link(_context(TraceState())), Link(_context(TraceState([("link", "l1")])), {"dropped": 0, "kept": 1})])
    span.add_event("dropped", timestamp=T0 + 8)
    span.add_event("kept", {"n": 1}, timestamp=T0 + 9)
    span.end(end_time=T0 + 2_000_000_007)
    provider.shutdown()
    return list(memory.get_finished_spans())


def export_per_service(port: int, spans: list[ReadableSpan]) -> None:
    """One OTLP/gRPC export call per service, all through one SDK exporter."""
    exporter = otlp_exporter("grpc", port)
    try:
        for service in sorted({span.resource.attributes["service.name"] for span in spans}):
            agent = [span for span in spans if span.resource.attributes["service.name"] == service]
            assert exporter.export(agent) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


def sdk_messages(spans: list[ReadableSpan]) -> dict[str, list[tuple[Any, Any, Any]]]:
    """span id → its (Resource, Scope, Span) messages as the SDK's own OTLP encoder writes them."""
    return raw_spans([encode_spans(spans)])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_spans_reach_jaeger_field_for_field(jaeger, tmp_path, variant):
    kind, options = VARIANTS[variant]
    spans = agent_run(ROOT_ATTRIBUTES, resource={"service.namespace": f"jaeger-{variant}"})
    spans += remote_continuation(f"jaeger-{variant}")
    want = expected_from_sdk(spans)
    trace_ids = {fields["trace_id"] for fields in want.values()}
    # Sent on size, never on time: the batch holds exactly the two agents' requests.
    overlay = pipeline_overlay(exporter_to(jaeger, kind, options), batch_processor("60s", send_batch_size=len(spans)))
    with Daemon(BASE_CONFIG, workdir=tmp_path, overlay=overlay) as daemon:
        export_per_service(daemon.ports["grpc"], spans)
        wait_until(lambda: daemon.metric("otelcol_exporter_sent_spans_total", exporter=kind) == len(spans),
                   timeout=30, message=f"{kind} sending to Jaeger")
        assert daemon.metric("otelcol_exporter_send_failed_spans_total", exporter=kind) == 0
        assert daemon.metric("otelcol_processor_batch_batch_send_size_count") == 1

    wait_until(lambda: set(want) <= set(span_ids(jaeger.traces(trace_ids))), timeout=30,
               message="every span queryable in Jaeger")
    stored = jaeger.traces(trace_ids)
    assert_spans_once(spans_out(stored), want, f"Jaeger via {variant}")
    assert raw_spans(stored) == sdk_messages(spans), f"Jaeger via {variant}: messages differ from the SDK's"


SECRET = "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0kLmN"  # an OpenAI-style key, as an agent might log it


def test_a_batch_changed_by_redaction_reaches_jaeger_re_serialised(jaeger, tmp_path):
    spans = agent_run({**ROOT_ATTRIBUTES, "gen_ai.prompt": f"use key {SECRET} please"},
                      resource={"service.namespace": "jaeger-redaction"})
    want = expected_from_sdk(spans)
    for fields in want.values():  # what the redaction processor promises to make of the prompt
        if "gen_ai.prompt" in fields["attributes"]:
            fields["attributes"]["gen_ai.prompt"] = "use key [REDACTED:sk_api_key] please"
    trace_ids = {fields["trace_id"] for fields in want.values()}
    processors = "  redaction: {allow_all_keys: true}\n" + batch_processor("60s", send_batch_size=len(spans))
    overlay = pipeline_overlay(exporter_to(jaeger, "otlp", {}), processors)
    with Daemon(BASE_CONFIG, workdir=tmp_path, overlay=overlay) as daemon:
        export_per_service(daemon.ports["grpc"], spans)
        wait_until(lambda: daemon.metric("otelcol_exporter_sent_spans_total", exporter="otlp") == len(spans),
                   timeout=30, message="otlp sending to Jaeger")

    wait_until(lambda: set(want) <= set(span_ids(jaeger.traces(trace_ids))), timeout=30,
               message="every span queryable in Jaeger")
    stored = jaeger.traces(trace_ids)
    assert_spans_once(spans_out(stored), want, "Jaeger after redaction")
    assert all(SECRET.encode() not in request.SerializeToString() for request in stored)

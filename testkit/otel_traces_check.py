"""Shared by the ClickHouse and chDB exporter tests: known agent traces, and the row each span must become.

`send_agent_traces` plays two agents with the OpenTelemetry SDK (OTLP/gRPC to the daemon) and
returns the SDK's own record of every span; `expected_row` is the `otel_traces` row
docs/clickhouse-schema.md#the-spans-table-otel_traces says that span becomes; `ROWS_SQL` reads
rows back with nanosecond times.
"""
from __future__ import annotations

import json
import math
import time
from decimal import Decimal
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from testkit.otlp_spans import sdk_provider

T0 = (time.time_ns() // 10**9 - 3600) * 10**9 + 123_456_789  # an hour ago, odd nanoseconds
REMOTE_PARENT = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, is_remote=True,
                            trace_flags=TraceFlags(TraceFlags.SAMPLED), trace_state=TraceState([("vendor", "x1")]))
LINKED = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
                     trace_state=TraceState([("link", "l1")]))

ROWS_SQL = """SELECT toUnixTimestamp64Nano(Timestamp) AS Timestamp, TraceId, SpanId, ParentSpanId, TraceState,
    SpanName, SpanKind, ServiceName, ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration,
    StatusCode, StatusMessage, arrayMap(x -> toUnixTimestamp64Nano(x), Events.Timestamp) AS EventTimestamps,
    Events.Name AS EventNames, Events.Attributes AS EventAttributes, Links.TraceId AS LinkTraceIds,
    Links.SpanId AS LinkSpanIds, Links.TraceState AS LinkTraceStates, Links.Attributes AS LinkAttributes
FROM {table} ORDER BY SpanId"""

KIND = {SpanKind.INTERNAL: "Internal", SpanKind.SERVER: "Server", SpanKind.CLIENT: "Client",
        SpanKind.PRODUCER: "Producer", SpanKind.CONSUMER: "Consumer"}
STATUS = {StatusCode.UNSET: "Unset", StatusCode.OK: "Ok", StatusCode.ERROR: "Error"}


def send_agent_traces(grpc_endpoint: str) -> list[ReadableSpan]:
    """Two agents' traces (every kind, status, attribute type, events, links); returns what the SDK sent."""
    sent: list[ReadableSpan] = []
    for service, build in (("planner-agent", _planner), ("tool-agent", _tool_agent)):
        provider, memory = sdk_provider(Resource.create({"service.name": service, "deployment.environment": "test",
                                                         "host.cpus": 8}),
                                        OTLPSpanExporter(endpoint=grpc_endpoint, insecure=True))
        build(provider.get_tracer("agent.sdk", "1.2.3"))
        sent.extend(memory.get_finished_spans())
        provider.shutdown()
    assert len(sent) == 5
    return sent


def _planner(tracer: Any) -> None:
    parent = trace_api.set_span_in_context(NonRecordingSpan(REMOTE_PARENT))
    root = tracer.start_span("agent.run", context=parent, kind=SpanKind.SERVER, start_time=T0, attributes={
        "gen_ai.agent.name": "planner", "gen_ai.usage.input_tokens": 1200, "gen_ai.request.temperature": 0.25,
        "stream": True, "tags": ["plan", "search"], "scores": [1.5, 2.0], "flags": [True, False], "ids": [1, 2]})
    root.add_event("exception", {"exception.message": "tool failed: timeout", "attempt": 2}, timestamp=T0 + 5_000)
    root.add_event("retry", timestamp=T0 + 6_000)
    ctx = trace_api.set_span_in_context(root)
    llm = tracer.start_span("chat gpt-x", context=ctx, kind=SpanKind.CLIENT, start_time=T0 + 1_000,
                            links=[Link(LINKED, {"link.kind": "follows_from"})],
                            attributes={"gen_ai.request.model": "gpt-x"})
    llm.set_status(Status(StatusCode.OK))
    llm.end(end_time=T0 + 2_500_000_001)
    tool = tracer.start_span("tool.search", context=ctx, kind=SpanKind.INTERNAL, start_time=T0 + 2_600_000_000)
    tool.end(end_time=T0 + 2_600_000_007)
    root.set_status(Status(StatusCode.ERROR, "tool failed"))
    root.end(end_time=T0 + 3_000_000_000)


def _tool_agent(tracer: Any) -> None:
    produce = tracer.start_span("queue.publish", kind=SpanKind.PRODUCER, start_time=T0 + 10)
    produce.end(end_time=T0 + 20)
    ctx = trace_api.set_span_in_context(produce)
    consume = tracer.start_span("queue.process", context=ctx, kind=SpanKind.CONSUMER, start_time=T0 + 30,
                                attributes={"messaging.batch.size": 0})
    consume.end(end_time=T0 + 1_000_030)


def text(value: Any) -> str:
    """AnyValue as text, the way otelcol stores attribute values in ClickHouse."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _double(value)
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), separators=(",", ":"))
    return str(value)


def _double(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    text_ = repr(value)
    text_ = format(Decimal(text_), "f") if "e" in text_ else text_
    return text_[:-2] if text_.endswith(".0") else text_


def attrs(mapping: Any) -> dict[str, str]:
    return {key: text(value) for key, value in (mapping or {}).items()}


def expected_row(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.context
    return {
        "Timestamp": span.start_time, "TraceId": f"{ctx.trace_id:032x}", "SpanId": f"{ctx.span_id:016x}",
        "ParentSpanId": f"{span.parent.span_id:016x}" if span.parent else "",
        "TraceState": ctx.trace_state.to_header(), "SpanName": span.name, "SpanKind": KIND[span.kind],
        "ServiceName": span.resource.attributes["service.name"], "ResourceAttributes": attrs(span.resource.attributes),
        "ScopeName": span.instrumentation_scope.name, "ScopeVersion": span.instrumentation_scope.version or "",
        "SpanAttributes": attrs(span.attributes), "Duration": span.end_time - span.start_time,
        "StatusCode": STATUS[span.status.status_code], "StatusMessage": span.status.description or "",
        "EventTimestamps": [e.timestamp for e in span.events], "EventNames": [e.name for e in span.events],
        "EventAttributes": [attrs(e.attributes) for e in span.events],
        "LinkTraceIds": [f"{link.context.trace_id:032x}" for link in span.links],
        "LinkSpanIds": [f"{link.context.span_id:016x}" for link in span.links],
        # The SDK's OTLP encoder leaves link trace_state out of the wire (tests/unit/test_columns.py covers it).
        "LinkTraceStates": ["" for _ in span.links],
        "LinkAttributes": [attrs(link.attributes) for link in span.links],
    }


def assert_rows_match(rows: list[dict[str, Any]], spans: list[ReadableSpan], normalised: bool = False) -> None:
    """Every span has exactly one row, equal to its expected row in every field.

    `normalised`: the pipeline ran the `genai` processor, which adds canonical `gen_ai.*`
    attributes (at least the conversation id) and `error.type`, and must keep every original one as it was.
    """
    by_id: dict[str, dict[str, Any]] = {}
    for row in rows:
        assert row["SpanId"] not in by_id, f"duplicate row for span {row['SpanId']}"
        by_id[row["SpanId"]] = {key: (list(value) if isinstance(value, tuple) else value) for key, value in row.items()}
    expected = {f"{span.context.span_id:016x}": expected_row(span) for span in spans}
    assert set(by_id) == set(expected)
    sessions = 0
    for span_id, want in expected.items():
        got = by_id[span_id]
        if normalised:
            added = {k: v for k, v in got["SpanAttributes"].items() if k not in want["SpanAttributes"]}
            assert all(k.startswith("gen_ai.") or k == "error.type" for k in added), added
            sessions += "gen_ai.conversation.id" in added
            got = {**got, "SpanAttributes": {k: v for k, v in got["SpanAttributes"].items() if k not in added}}
        for key, value in want.items():
            assert got[key] == value, f"span {want['SpanName']} ({span_id}) {key}: {got[key]!r} != {value!r}"
    assert sessions or not normalised, "the genai processor gave no span a session id"
    names = {row["SpanName"]: row for row in by_id.values()}
    assert names["agent.run"]["SpanKind"] == "Server" and names["agent.run"]["StatusCode"] == "Error"
    assert names["agent.run"]["ParentSpanId"] == "00f067aa0ba902b7" and names["agent.run"]["TraceState"] == "vendor=x1"
    assert names["chat gpt-x"]["Duration"] == 2_499_999_001, names["chat gpt-x"]
    assert names["tool.search"]["Duration"] == 7, names["tool.search"]

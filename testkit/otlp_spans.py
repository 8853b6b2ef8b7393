"""Shared by the tests that read OTLP back (file exporter output, Kafka topics, OTLP sinks).

- `read_json_lines` / `read_proto_records`: the `file` exporter's two formats, as requests;
- `spans_out(requests)`: span id hex → every copy of that span read, as plain values
  (ids hex, enums as ints, attributes as dicts with arrays as tuples), with its resource
  and scope;
- `expected_from_sdk(spans)`: the same form worked out from the OpenTelemetry SDK's own
  `ReadableSpan`s, so what went in and what came out compare field by field;
- `assert_spans_once`: every expected span read exactly once, every field equal;
- `raw_spans(requests)`: span id hex → (resource, scope, span) protobuf messages, to compare
  what two destinations got message for message (every field, flags and dropped counts too);
- `span_ids(requests)`: span id hex of every span read, one entry per copy.

And the OpenTelemetry SDK side, for the tests that play agents:
- `sdk_provider(resource, *outputs)`: a TracerProvider sending its spans to each output (an
  exporter, or a span processor as it is) and recording them in memory;
- `otlp_exporter(transport, port)` / `export_spans(exporter, spans)`: the SDK's own OTLP
  exporter to a daemon's receiver, and one export call that must succeed;
- `agent_run(root_attributes)`: a small two-agent run (every span kind, events, links, statuses).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Mapping, Sequence

from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from pipeline import otlp_json

SpanFields = dict[str, Any]
T0 = 1_700_000_000_123_456_789  # a fixed start time, in ns: times must come back to the nanosecond


def read_json_lines(path: Path) -> list[ExportTraceServiceRequest]:
    """Every complete OTLP/JSON line (a line still being written has no newline yet)."""
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")[:-1]
    return [otlp_json.decode(line, ExportTraceServiceRequest) for line in lines if line.strip()]


def read_proto_records(path: Path) -> list[ExportTraceServiceRequest]:
    """Every complete 4-byte-big-endian-length-prefixed protobuf record."""
    if not path.exists():
        return []
    data, out, pos = path.read_bytes(), [], 0
    while pos + 4 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        if pos + 4 + length > len(data):
            break
        out.append(ExportTraceServiceRequest.FromString(data[pos + 4:pos + 4 + length]))
        pos += 4 + length
    return out


def any_value(value: Any) -> Any:
    """An OTLP AnyValue as a Python value (arrays as tuples, kvlists as dicts)."""
    which = value.WhichOneof("value")
    if which == "array_value":
        return tuple(any_value(v) for v in value.array_value.values)
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if which is None:
        return None
    return getattr(value, which)


def attributes(kvs: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def _span_fields(rs: Any, ss: Any, span: Any) -> SpanFields:
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "name": span.name,
        "kind": int(span.kind),
        "start": span.start_time_unix_nano,
        "end": span.end_time_unix_nano,
        "attributes": attributes(span.attributes),
        "events": [(e.name, e.time_unix_nano, attributes(e.attributes)) for e in span.events],
        "links": [(link.trace_id.hex(), link.span_id.hex(), attributes(link.attributes)) for link in span.links],
        "status": (int(span.status.code), span.status.message),
        "resource": attributes(rs.resource.attributes),
        "scope": (ss.scope.name, ss.scope.version, attributes(ss.scope.attributes)),
    }


def each_span(requests_: Iterable[ExportTraceServiceRequest]) -> Iterator[tuple[Any, Any, Any]]:
    """(ResourceSpans, ScopeSpans, Span) of every span of `requests_`, in order."""
    for request in requests_:
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    yield rs, ss, span


def spans_out(requests_: Iterable[ExportTraceServiceRequest]) -> dict[str, list[SpanFields]]:
    """span id (hex) → every copy of that span read, normalised with its resource and scope."""
    out: dict[str, list[SpanFields]] = {}
    for rs, ss, span in each_span(requests_):
        out.setdefault(span.span_id.hex(), []).append(_span_fields(rs, ss, span))
    return out


def raw_spans(requests_: Iterable[ExportTraceServiceRequest]) -> dict[str, list[tuple[Any, Any, Any]]]:
    """span id (hex) → every copy read, as its (Resource, InstrumentationScope, Span) messages."""
    out: dict[str, list[tuple[Any, Any, Any]]] = {}
    for rs, ss, span in each_span(requests_):
        out.setdefault(span.span_id.hex(), []).append((rs.resource, ss.scope, span))
    return out


def span_ids(requests_: Iterable[ExportTraceServiceRequest]) -> list[str]:
    """Span id hex of every span of `requests_`, one entry per copy."""
    return [span.span_id.hex() for _, _, span in each_span(requests_)]


def expected_from_sdk(spans: Iterable[Any]) -> dict[str, SpanFields]:
    """What the output must hold for each SDK span, worked out from the SDK's own span objects."""
    out = {}
    for span in spans:
        ctx = span.get_span_context()
        scope = span.instrumentation_scope
        out[f"{ctx.span_id:016x}"] = {
            "trace_id": f"{ctx.trace_id:032x}",
            "span_id": f"{ctx.span_id:016x}",
            "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else "",
            "name": span.name,
            "kind": span.kind.value + 1,  # SDK INTERNAL=0 … CONSUMER=4; OTLP INTERNAL=1 … CONSUMER=5
            "start": span.start_time,
            "end": span.end_time,
            "attributes": dict(span.attributes),
            "events": [(e.name, e.timestamp, dict(e.attributes or {})) for e in span.events],
            "links": [(f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}", dict(link.attributes or {}))
                      for link in span.links],
            "status": (span.status.status_code.value, span.status.description or ""),
            "resource": dict(span.resource.attributes),
            "scope": (scope.name, scope.version or "", dict(scope.attributes or {})),
        }
    return out


def assert_spans_once(found: dict[str, list[SpanFields]], want: dict[str, SpanFields], where: str) -> None:
    """Every span of `want` is in `found` exactly once, equal in every field `want` names."""
    for span_id, fields in want.items():
        copies = found.get(span_id, [])
        assert len(copies) == 1, f"{where}: span {fields['name']!r} ({span_id}) read {len(copies)} times"
        for field, value in fields.items():
            assert copies[0][field] == value, \
                f"{where}: span {fields['name']!r} field {field!r}: {copies[0][field]!r} != {value!r}"


# -- the OpenTelemetry SDK playing agents ------------------------------------------------------
def sdk_provider(resource: Resource, *outputs: SpanExporter | SpanProcessor
                 ) -> tuple[TracerProvider, InMemorySpanExporter]:
    """A TracerProvider of `resource` whose finished spans go to each of `outputs` (an exporter
    through a SimpleSpanProcessor, a span processor as it is) and to the in-memory exporter
    returned with it: the SDK's own record of every span it made."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    for output in outputs:
        provider.add_span_processor(output if isinstance(output, SpanProcessor) else SimpleSpanProcessor(output))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def otlp_exporter(transport: Literal["grpc", "http"], port: int, **options: Any) -> SpanExporter:
    """The SDK's OTLP span exporter to a receiver on 127.0.0.1:`port`: gRPC (insecure) or
    HTTP/protobuf at /v1/traces; `options` (compression, timeout, ...) are the exporter's."""
    if transport == "grpc":
        return GrpcSpanExporter(endpoint=f"http://127.0.0.1:{port}", insecure=True, **options)
    return HttpSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", **options)


def export_spans(exporter: SpanExporter, spans: Sequence[ReadableSpan]) -> None:
    """One export call of `spans`, which must succeed; the exporter is shut down after."""
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


def agent_run(root_attributes: Mapping[str, Any], resource: Mapping[str, Any] | None = None,
              filler: int = 0) -> list[ReadableSpan]:
    """A small agent run made with the SDK (recorded, not sent): two services (resources), two
    scopes each, every span kind, parent/child, events, links (one to a remote trace), error /
    ok / unset status. `root_attributes` go on each root span, `resource` into each service's
    resource; `filler` pads every span with an attribute of that many characters (large batches)."""
    finished: list[ReadableSpan] = []
    remote = SpanContext(int.from_bytes(os.urandom(16), "big"), int.from_bytes(os.urandom(8), "big"),
                         is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    padding = {"gen_ai.prompt": "p" * filler} if filler else {}
    for service, version in (("planner-agent", "1.4.2"), ("tool-runner", "0.9.0")):
        provider, memory = sdk_provider(Resource({"service.name": service, "service.version": version,
                                                  **(resource or {})}))
        agent = provider.get_tracer("agent.scope", "2.0.1", attributes={"scope.attr": "s"})
        tools = provider.get_tracer("tool.scope", "0.1")
        root = agent.start_span("invoke_agent planner", kind=SpanKind.SERVER, start_time=T0,
                                attributes={**root_attributes, **padding})
        root.add_event("gen_ai.user.message", {"content": "plan a trip", "tokens": 12}, timestamp=T0 + 10)
        root.add_event("checkpoint", timestamp=T0 + 20)
        context = trace_api.set_span_in_context(root)
        for offset, kind in enumerate((SpanKind.CLIENT, SpanKind.INTERNAL, SpanKind.PRODUCER, SpanKind.CONSUMER)):
            child = (tools if offset % 2 else agent).start_span(
                f"execute_tool step{offset}", context=context, kind=kind, start_time=T0 + 100 + offset,
                attributes={"gen_ai.tool.name": f"tool{offset}", "gen_ai.request.model": "llama3",
                            "attempt": offset, "ok": offset != 1, **padding},
                links=[Link(remote, {"link.kind": "follows", "n": offset}), Link(root.get_span_context())])
            child.add_event("exception", {"exception.type": "TimeoutError", "exception.message": "slow"},
                            timestamp=T0 + 150 + offset)
            if kind == SpanKind.CLIENT:
                child.set_status(Status(StatusCode.ERROR, "upstream timed out after 30s"))
            elif kind == SpanKind.INTERNAL:
                child.set_status(Status(StatusCode.OK))
            child.end(end_time=T0 + 1_000_000 + offset)
        root.end(end_time=T0 + 5_000_000_000)
        provider.shutdown()
        finished.extend(memory.get_finished_spans())
    return finished

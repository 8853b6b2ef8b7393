"""Shared by the tests that read OTLP back (file exporter output, Kafka topics, OTLP sinks).

- `read_json_lines` / `read_proto_records`: the `file` exporter's two formats, as requests;
- `spans_out(requests)`: span id hex → every copy of that span read, as plain values
  (ids hex, enums as ints, attributes as dicts with arrays as tuples), with its resource
  and scope;
- `expected_from_sdk(spans)`: the same form worked out from the OpenTelemetry SDK's own
  `ReadableSpan`s, so what went in and what came out compare field by field;
- `assert_spans_once`: every expected span read exactly once, every field equal;
- `raw_spans(requests)`: span id hex → (resource, scope, span) protobuf messages, to compare
  what two destinations got message for message (every field, flags and dropped counts too).
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Iterable, Iterator

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline import otlp_json

SpanFields = dict[str, Any]


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

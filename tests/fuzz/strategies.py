"""Hypothesis strategies for the fuzz tests: what an adversarial OTLP client sends.

- `trace_requests()`: ExportTraceServiceRequests mixing good spans with poisoned ones
  (wrong-length ids, u64 edge times up to 2^64-1, unknown enum values, NaN doubles, empty and
  1 MiB strings, AnyValues nested up to 1,000 levels);
- `proto_bodies()` / `json_bodies()`: such a request as protobuf or OTLP/JSON bytes, either as
  is or corrupted: bit flips, truncation, invalid UTF-8, wrong field types, huge integers,
  objects and arrays nested 1,000 levels, random bytes or random JSON;
- `http_cases()`: a body with the headers it is sent with (content type, with or without
  parameters; gzip, deflate, zstd or none, a gzip or zstd stream that is itself corrupted, or
  a coding the receiver does not take), whole or chunked; `grpc_cases()`: a body and its call compression;
- `kafka_values(encoding)`: record values for the kafka receiver's decoder.

Nothing here decides what the daemon should answer; the tests do (tests/fuzz/oracle.py).
"""
from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
import zstandard
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from pipeline import otlp_json

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

U64_EDGES = (0, 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1)
INT64_EDGES = (-(2**63), -1, 0, 2**63 - 1)
# Integers a JSON client may put where a number belongs: in range, at and past the u64 edge.
HUGE_INTS = (2**63 - 1, 2**63, 2**64 - 1, 2**64, -1, -(2**63) - 1, 10**30)
DEPTHS = (2, 38, 39, 100, 1000)  # AnyValue levels in a span; 38/39: either side of upb's limit
JSON_DEPTHS = (48, 150, 1000, 1000)  # levels of nesting in a JSON document (orjson stops at 1,024)
T_LOW, T_HIGH = 1_600_000_000 * 10**9, 1_900_000_000 * 10**9

u64 = st.one_of(st.sampled_from(U64_EDGES), st.integers(0, 2**64 - 1))
times = st.one_of(st.integers(T_LOW, T_HIGH), st.integers(T_LOW, T_HIGH), u64)
u32 = st.integers(0, 2**32 - 1)
int32 = st.integers(-(2**31), 2**31 - 1)
short_text = st.text(max_size=24)


def _huge(size: int) -> str:
    return "é" * (size // 2)  # a two-byte character


# Span names: short, empty, or (rarely) huge: 1 MiB.
names = st.one_of(short_text, short_text, short_text, short_text, short_text, short_text, st.just(""),
                  st.just(1 << 20).map(_huge))


def ident(size: int) -> st.SearchStrategy[bytes]:
    """A trace/span id: mostly the right length, sometimes any length (invalid)."""
    right = st.binary(min_size=size, max_size=size)
    return st.one_of(right, right, right, st.binary(max_size=2 * size + 1))


def deep_any_value(root: AnyValue, depth: int) -> None:
    """Fill `root` (in place: upb copies a message past its depth limit by re-parsing it, which
    fails) with arrays (or, on odd levels, kvlists) `depth` levels deep."""
    node = root
    for level in range(depth):
        if level % 2:
            node = node.kvlist_value.values.add(key="k").value
        else:
            node = node.array_value.values.add()
    node.string_value = "bottom"


scalar_values = st.one_of(
    short_text.map(lambda s: AnyValue(string_value=s)),
    st.booleans().map(lambda b: AnyValue(bool_value=b)),
    st.one_of(st.sampled_from(INT64_EDGES), st.integers(-(2**63), 2**63 - 1)).map(lambda i: AnyValue(int_value=i)),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: AnyValue(double_value=f)),
    st.binary(max_size=32).map(lambda b: AnyValue(bytes_value=b)),
    st.just(AnyValue()),
)
any_values = st.recursive(scalar_values, lambda children: st.one_of(
    st.lists(children, max_size=3).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs))),
    st.lists(st.tuples(short_text, children), max_size=3).map(
        lambda kvs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs])))),
    max_leaves=6)
attributes = st.lists(st.builds(KeyValue, key=short_text, value=any_values), max_size=3)


@st.composite
def spans(draw: st.DrawFn) -> Span:
    span = Span(
        trace_id=draw(ident(16)), span_id=draw(ident(8)),
        parent_span_id=draw(st.one_of(st.just(b""), ident(8))),
        trace_state=draw(short_text), name=draw(names),
        kind=draw(st.one_of(st.integers(0, 5), int32)),   # unknown enum values are legal proto3
        start_time_unix_nano=draw(times), end_time_unix_nano=draw(times),
        attributes=draw(attributes), dropped_attributes_count=draw(u32), flags=draw(u32),
        status=Status(code=draw(st.one_of(st.integers(0, 2), int32)), message=draw(short_text)),
    )
    for _ in range(draw(st.integers(0, 2))):
        span.events.add(time_unix_nano=draw(times), name=draw(short_text)).attributes.extend(draw(attributes))
    for _ in range(draw(st.integers(0, 1))):
        span.links.add(trace_id=draw(ident(16)), span_id=draw(ident(8)), flags=draw(u32))
    return span


@st.composite
def trace_requests(draw: st.DrawFn, deep: bool = False) -> ExportTraceServiceRequest:
    """A request of a few resources, scopes and spans; with `deep`, sometimes one span has an
    attribute nested DEPTHS deep (past 38 levels, 100 messages, upb refuses the request)."""
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rs: ResourceSpans = request.resource_spans.add(schema_url=draw(short_text))
        rs.resource.attributes.add(key="service.name").value.string_value = draw(short_text)
        rs.resource.attributes.extend(draw(attributes))
        for _ in range(draw(st.integers(0, 2))):
            ss: ScopeSpans = rs.scope_spans.add()
            ss.scope.name, ss.scope.version = draw(short_text), draw(short_text)
            ss.spans.extend(draw(st.lists(spans(), max_size=4)))
    if deep and request.resource_spans and draw(st.integers(0, 3)) == 0:
        rs = request.resource_spans[draw(st.integers(0, len(request.resource_spans) - 1))]
        target = rs.scope_spans[0].spans[0].attributes if rs.scope_spans and rs.scope_spans[0].spans \
            else rs.resource.attributes
        deep_any_value(target.add(key="deep").value, draw(st.sampled_from(DEPTHS)))
    return request


# --- corruptions of bytes -------------------------------------------------------------------

@st.composite
def bit_flipped(draw: st.DrawFn, data: bytes) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    for bit in draw(st.lists(st.integers(0, len(data) * 8 - 1), min_size=1, max_size=8)):
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@st.composite
def truncated(draw: st.DrawFn, data: bytes) -> bytes:
    return data[:draw(st.integers(0, max(0, len(data) - 1)))]


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


# A resource attribute whose key is not UTF-8 (proto3 strings must be), appended as one more
# resource_spans entry: concatenated messages merge, so the rest of the request is unchanged.
INVALID_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\x80")
# Known fields sent with the wrong wire type: varint where a message belongs, and a fixed64
# where the span's name (a string) belongs.
WRONG_WIRE_TYPES = (b"\x08\x01", field(1, field(2, field(2, b"\x29" + b"\x00" * 8))),
                    field(1, field(2, field(2, b"\x0d\x01\x02\x03\x04"))))


@st.composite
def proto_bodies(draw: st.DrawFn) -> bytes:
    """A trace request as protobuf: valid, or corrupted in one of the ways above."""
    data = draw(trace_requests(deep=True)).SerializeToString()
    how = draw(st.sampled_from(("valid", "valid", "valid", "bitflip", "truncate", "utf8", "wire_type", "random")))
    if how == "bitflip":
        return draw(bit_flipped(data))
    if how == "truncate":
        return draw(truncated(data))
    if how == "utf8":
        key = draw(st.sampled_from(INVALID_UTF8))
        return data + field(1, field(1, field(1, field(1, key))))
    if how == "wire_type":
        return data + draw(st.sampled_from(WRONG_WIRE_TYPES))
    if how == "random":
        return draw(st.binary(max_size=256))
    return data


# --- corruptions of OTLP/JSON documents -----------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.sampled_from(HUGE_INTS), st.integers(-(2**63), 2**64 - 1),
                         st.floats(allow_nan=False), short_text,
                         st.sampled_from(HUGE_INTS).map(str), st.sampled_from(("NaN", "-Infinity", "0x10", "")))
json_values = st.recursive(json_scalars, lambda children: st.one_of(
    st.lists(children, max_size=3), st.dictionaries(short_text, children, max_size=3)), max_leaves=8)
# Where a deep structure goes: an attribute value (AnyValues, or bare arrays), a span's unknown
# key, the top-level list.
DEEP_PLACES = ("attribute", "attribute_arrays", "unknown_key", "resource_spans")


def _positions(document: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) of a JSON document, found without recursion."""
    out, stack = [], [document]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            out.append((node, key))
            stack.append(value)
    return out


def deep_json(place: str, depth: int) -> bytes:
    """A trace document with `depth` levels of nesting at `place`, written as text (orjson
    cannot serialise that deep, and a client's bytes need not come from a serialiser)."""
    if place == "resource_spans":
        return b'{"resourceSpans":' + b'[' * depth + b']' * depth + b'}'
    if place == "attribute":
        inner = b'{"arrayValue":{"values":[' * depth + b'{"stringValue":"x"}' + b']}}' * depth
    else:
        inner = b'[' * depth + b']' * depth
    value = b'"unknownKey":' + inner if place == "unknown_key" else b'"attributes":[{"key":"k","value":' + inner + b'}]'
    span = b'{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"deep",' + value + b'}'

    return b'{"resourceSpans":[{"scopeSpans":[{"spans":[' + span + b']}]}]}'


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    """A trace request as OTLP/JSON: valid, or corrupted in one of the ways above."""
    document = otlp_json.to_document(draw(trace_requests()))
    how = draw(st.sampled_from(("valid", "valid", "valid", "wrong_type", "huge_int", "utf8", "deep", "deep",
                                "random_json", "bitflip", "truncate")))
    if how in ("wrong_type", "huge_int"):
        positions = _positions(document)
        if positions:
            container, key = draw(st.sampled_from(positions))
            container[key] = draw(json_values if how == "wrong_type" else
                                  st.one_of(st.sampled_from(HUGE_INTS), st.sampled_from(HUGE_INTS).map(str)))
        return _dumps(document)
    if how == "utf8":
        data = orjson.dumps({**document, "resourceSpans": [{"resource": {"attributes": [
            {"key": "MARK", "value": {"stringValue": "v"}}]}}, *document.get("resourceSpans", [])]})
        return data.replace(b"MARK", draw(st.sampled_from(INVALID_UTF8)), 1)
    if how == "deep":
        return deep_json(draw(st.sampled_from(DEEP_PLACES)), draw(st.sampled_from(JSON_DEPTHS)))
    if how == "random_json":
        return _dumps(draw(json_values))
    data = orjson.dumps(document)
    if how == "bitflip":
        return draw(bit_flipped(data))
    if how == "truncate":
        return draw(truncated(data))
    return data


def _dumps(value: Any) -> bytes:
    """JSON text of `value`, integers past 64 bits included (the stdlib writes those)."""
    import json

    return json.dumps(value).encode()


# --- transports ----------------------------------------------------------------------------

@dataclass(frozen=True)
class HttpCase:
    content_type: str
    content_encoding: str | None
    body: bytes       # as sent on the wire
    plain: bytes | None  # the body before compression, when the compression was done right
    chunk: int = 0    # > 0: sent with Transfer-Encoding: chunked, in chunks of this size

    @property
    def media_type(self) -> str:
        """The content type without its parameters (`; charset=utf-8`), as the receiver reads it."""
        return self.content_type.partition(";")[0].strip()

    def __repr__(self) -> str:  # hypothesis prints failing cases; 1 MiB bodies make that unreadable
        return (f"HttpCase({self.content_type!r}, {self.content_encoding!r}, chunk={self.chunk}, "
                f"body={self.body[:200]!r}{'...' if len(self.body) > 200 else ''} ({len(self.body)} bytes))")


@st.composite
def http_cases(draw: st.DrawFn) -> HttpCase:
    fmt = draw(st.sampled_from((PROTOBUF, JSON)))
    plain = draw(proto_bodies() if fmt == PROTOBUF else json_bodies())
    # Mostly the right content type; sometimes the other one, or one the receiver does not take.
    content_type = draw(st.sampled_from((fmt, fmt, fmt, f"{fmt}; charset=utf-8", PROTOBUF if fmt == JSON else JSON,
                                         "text/plain")))
    chunk = draw(st.sampled_from((0, 0, 0, 1, 7, 4096)))
    compression = draw(st.sampled_from(("none", "gzip", "gzip", "gzip_bitflip", "gzip_truncate", "gzip_claimed",
                                        "deflate", "zstd", "zstd_corrupt", "unknown", "stacked")))
    if compression == "none":
        return HttpCase(content_type, None, plain, plain, chunk)
    if compression == "deflate":
        return HttpCase(content_type, "deflate", zlib.compress(plain), plain, chunk)
    if compression in ("zstd", "zstd_corrupt"):
        packed = zstandard.ZstdCompressor(write_checksum=True).compress(plain)
        if compression == "zstd":
            return HttpCase(content_type, "zstd", packed, plain, chunk)
        corrupt = draw(st.one_of(bit_flipped(packed), truncated(packed)))
        return HttpCase(content_type, "zstd", corrupt, None, chunk)
    if compression in ("unknown", "stacked"):  # br, or two codings: neither is taken
        return HttpCase(content_type, "br" if compression == "unknown" else "gzip, deflate", plain, None, chunk)
    if compression == "gzip_claimed":  # says gzip, is not
        return HttpCase(content_type, "gzip", plain, None, chunk)
    packed = gzip.compress(plain, mtime=0)
    if compression == "gzip_bitflip":
        return HttpCase(content_type, "gzip", draw(bit_flipped(packed)), None, chunk)
    if compression == "gzip_truncate":
        return HttpCase(content_type, "gzip", draw(truncated(packed)), None, chunk)
    return HttpCase(content_type, "gzip", packed, plain, chunk)


@dataclass(frozen=True)
class GrpcCase:
    body: bytes
    gzip: bool

    def __repr__(self) -> str:
        return f"GrpcCase(gzip={self.gzip}, body={self.body[:200]!r} ({len(self.body)} bytes))"


grpc_cases = st.builds(GrpcCase, body=proto_bodies(), gzip=st.booleans())


# --- kafka record values -------------------------------------------------------------------

# A valid trigger document (agentdbg.trigger/v1); the strategy replaces up to 4 of its fields
# with any JSON value (a list subject, "observed": "many", an object episode, huge numbers).
VALID_TRIGGER = {
    "schema": "agentdbg.trigger/v1", "id": "e1", "episode": "ep1", "kind": "error_rate_spike",
    "status": "firing", "severity": "critical", "subject": {"service": "checkout"},
    "subject_key": "service=checkout", "observed": 0.5, "threshold": 0.1, "unit": "ratio",
    "window": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:01:00Z"},
}
event_documents = st.dictionaries(
    st.sampled_from((*VALID_TRIGGER, "first_seen", "last_seen", "examples", "metrics", "target", "action")),
    st.one_of(json_values, st.just("2026-13-01T00:00:00Z"), st.just({"service": ["a"]})), max_size=4,
).map(lambda fields: _dumps({**VALID_TRIGGER, **fields}))


def kafka_values(encoding: str) -> st.SearchStrategy[bytes]:
    """Record values for a kafka receiver with `encoding` (json, otlp_json, otlp_proto)."""
    anything = st.one_of(st.binary(max_size=128), json_values.map(_dumps))
    if encoding == "json":
        utf8 = st.sampled_from(INVALID_UTF8).map(lambda b: b'{"schema":"agentdbg.trigger/v1","id":"' + b + b'"}')
        deep = st.sampled_from(DEPTHS).map(lambda d: b'{"schema":"agentdbg.x","a":' + b"[" * d + b"]" * d + b"}")
        return st.one_of(event_documents, event_documents, utf8, deep, anything)
    return st.one_of(json_bodies() if encoding == "otlp_json" else proto_bodies(), anything)

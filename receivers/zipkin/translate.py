"""Zipkin v2 spans (JSON or protobuf) → one OTLP ExportTraceServiceRequest, by otelcol's rules.

Both encodings are first read into `ZSpan` (the decoding checks types and id lengths; a
bad span is a `BadSpans` error naming it, and the whole request is refused, as Zipkin does).
The translation then follows otelcol contrib's zipkin translator:

- ids: hex (JSON) or big-endian bytes (protobuf); a 64-bit trace id is left-padded to 128
  bits; a parent id equal to the span's own id is dropped.
- kind: CLIENT / SERVER / PRODUCER / CONSUMER map one to one; without a kind, a
  `span.kind=internal` tag gives INTERNAL, anything else UNSPECIFIED.
- times: epoch µs → ns; end = start + duration. A span without a timestamp starts at 0 and
  gets `otel.zipkin.absentField.startTime=true`.
- resource: `localEndpoint.serviceName` → `service.name`; tags that are resource attributes
  (service.*, telemetry.sdk.*, host.*, process.*, ...) move to the resource, and spans are
  grouped by resource, then by scope (`otel.scope.name` / `otel.library.name` tags).
- endpoints: local ip/port → `net.host.ip` / `net.host.port`; remote serviceName / ip / port →
  `peer.service` / `net.peer.ip` / `net.peer.port`.
- status: `otel.status_code` (OK / ERROR / UNSET, with or without the STATUS_CODE_ prefix) and
  `otel.status_description`; an `error` tag makes the status ERROR, its value (unless "true"
  or empty) being the message when no description was given. Those tags are consumed.
- `w3c.tracestate` tag → trace_state. Other tags → string attributes (typed when
  `parse_string_tags`).
- annotations → events at their time: the OTel SDKs' `{"name": {attributes}}` value and
  otelcol's `name|{attributes}|dropped` value are unpacked; any other value is the name.
- `shared` true (a server span sharing its id with the caller's client span) → attribute
  `zipkin.shared: true`: OTLP has no field for it; otelcol drops it, this receiver keeps it
  visible. `debug` (a request to bypass sampling) is dropped as in otelcol: the OTel SDKs'
  Zipkin exporters set it on every sampled span, so it says nothing about the span.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from receivers.zipkin import zipkin_v2_pb2

ABSENT_START = "otel.zipkin.absentField.startTime"
RESOURCE_PREFIXES = ("service.", "telemetry.sdk.", "telemetry.auto.", "host.", "process.", "os.", "container.",
                     "k8s.", "cloud.", "deployment.", "device.", "faas.", "webengine.")
SCOPE_NAME_TAGS = ("otel.scope.name", "otel.library.name")
SCOPE_VERSION_TAGS = ("otel.scope.version", "otel.library.version")
KINDS = {"CLIENT": Span.SPAN_KIND_CLIENT, "SERVER": Span.SPAN_KIND_SERVER,
         "PRODUCER": Span.SPAN_KIND_PRODUCER, "CONSUMER": Span.SPAN_KIND_CONSUMER}
STATUS_CODES = {"UNSET": Status.STATUS_CODE_UNSET, "OK": Status.STATUS_CODE_OK, "ERROR": Status.STATUS_CODE_ERROR}
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")


class BadSpans(ValueError):
    """The body is not a list of valid Zipkin v2 spans; the message says where and why."""


@dataclass
class ZEndpoint:
    service: str = ""
    ip: str = ""  # ipv6 wins over ipv4 when both are set, as in otelcol
    port: int = 0


@dataclass
class ZSpan:
    trace_id: bytes
    span_id: bytes
    parent_id: bytes = b""
    kind: str = ""
    name: str = ""
    timestamp_us: int = 0
    duration_us: int = 0
    local: ZEndpoint | None = None
    remote: ZEndpoint | None = None
    annotations: list[tuple[int, str]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    debug: bool = False
    shared: bool = False


# --- JSON -------------------------------------------------------------------------------------

TraceIdHex = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{1,32}$")]
SpanIdHex = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{1,16}$")]
MAX_MICROS = 2 ** 64 // 1000  # as nanoseconds, a time must fit OTLP's fixed64
Micros = Annotated[int, Field(ge=0, lt=MAX_MICROS)]


class _JsonEndpoint(BaseModel):
    model_config = ConfigDict(extra="ignore")
    serviceName: str | None = None
    ipv4: ipaddress.IPv4Address | None = None
    ipv6: ipaddress.IPv6Address | None = None
    port: Annotated[int, Field(ge=0, le=65535)] | None = None

    def endpoint(self) -> ZEndpoint:
        ip = self.ipv6 or self.ipv4
        return ZEndpoint(self.serviceName or "", str(ip) if ip else "", self.port or 0)


class _JsonAnnotation(BaseModel):
    model_config = ConfigDict(extra="ignore")
    timestamp: Micros
    value: str


class _JsonSpan(BaseModel):
    model_config = ConfigDict(extra="ignore")
    traceId: TraceIdHex
    id: SpanIdHex
    parentId: SpanIdHex | None = None
    kind: str | None = None
    name: str | None = None
    timestamp: Micros | None = None
    duration: Micros | None = None
    localEndpoint: _JsonEndpoint | None = None
    remoteEndpoint: _JsonEndpoint | None = None
    annotations: list[_JsonAnnotation] | None = None
    tags: dict[str, str] | None = None
    debug: bool | None = None
    shared: bool | None = None

    def zspan(self) -> ZSpan:
        return ZSpan(
            trace_id=bytes.fromhex(self.traceId.rjust(32, "0")),
            span_id=bytes.fromhex(self.id.rjust(16, "0")),
            parent_id=bytes.fromhex(self.parentId.rjust(16, "0")) if self.parentId else b"",
            kind=(self.kind or "").upper(), name=self.name or "",
            timestamp_us=self.timestamp or 0, duration_us=self.duration or 0,
            local=self.localEndpoint.endpoint() if self.localEndpoint else None,
            remote=self.remoteEndpoint.endpoint() if self.remoteEndpoint else None,
            annotations=[(a.timestamp, a.value) for a in self.annotations or ()],
            tags=dict(self.tags or {}), debug=bool(self.debug), shared=bool(self.shared))


_JSON_SPANS = TypeAdapter(list[_JsonSpan])


def _summary(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for error in exc.errors()[:limit]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def from_json(body: bytes) -> list[ZSpan]:
    """A JSON array of Zipkin v2 spans; `BadSpans` on malformed JSON or a wrong type."""
    try:
        return [span.zspan() for span in _JSON_SPANS.validate_json(body)]
    except ValidationError as exc:
        raise BadSpans(f"not a list of Zipkin v2 spans: {_summary(exc)}") from None


# --- protobuf ---------------------------------------------------------------------------------

_PROTO_KINDS = {number: name for name, number in zipkin_v2_pb2.Span.Kind.items() if number}


def _proto_endpoint(message: zipkin_v2_pb2.Endpoint, where: str) -> ZEndpoint:
    try:
        ip = (ipaddress.IPv6Address(message.ipv6) if message.ipv6 else
              ipaddress.IPv4Address(message.ipv4) if message.ipv4 else None)
    except ValueError:
        raise BadSpans(f"{where}: ipv4 must be 4 bytes and ipv6 16 bytes") from None
    return ZEndpoint(message.service_name, str(ip) if ip else "", max(0, message.port))


def _proto_span(message: zipkin_v2_pb2.Span, index: int) -> ZSpan:
    where = f"spans[{index}]"
    if len(message.trace_id) not in (8, 16) or len(message.id) != 8 or len(message.parent_id) not in (0, 8):
        raise BadSpans(f"{where}: trace_id must be 8 or 16 bytes, id 8 bytes and parent_id 8 bytes or absent "
                       f"(got {len(message.trace_id)}, {len(message.id)} and {len(message.parent_id)})")
    if max([message.timestamp, message.duration, *(a.timestamp for a in message.annotations)]) >= MAX_MICROS:
        raise BadSpans(f"{where}: a timestamp or duration does not fit in nanoseconds since the epoch")
    return ZSpan(
        trace_id=message.trace_id.rjust(16, b"\0"), span_id=message.id, parent_id=message.parent_id,
        kind=_PROTO_KINDS.get(message.kind, ""),
        name=message.name, timestamp_us=message.timestamp, duration_us=message.duration,
        local=_proto_endpoint(message.local_endpoint, f"{where}.local_endpoint")
        if message.HasField("local_endpoint") else None,
        remote=_proto_endpoint(message.remote_endpoint, f"{where}.remote_endpoint")
        if message.HasField("remote_endpoint") else None,
        annotations=[(a.timestamp, a.value) for a in message.annotations],
        tags=dict(message.tags), debug=message.debug, shared=message.shared)


def from_proto(body: bytes) -> list[ZSpan]:
    """A serialized `zipkin.proto3.ListOfSpans`; `BadSpans` when it does not parse or an id is wrong."""
    try:
        spans = zipkin_v2_pb2.ListOfSpans.FromString(body).spans
    except DecodeError as exc:
        raise BadSpans(f"not a Zipkin ListOfSpans protobuf: {exc}") from None
    return [_proto_span(span, i) for i, span in enumerate(spans)]


# --- to OTLP ----------------------------------------------------------------------------------

def _any(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int) and -2 ** 63 <= value < 2 ** 63:
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        array = AnyValue()
        array.array_value.values.extend(_any(v) for v in value)
        return array
    return AnyValue(string_value=value if isinstance(value, str) else orjson.dumps(value).decode())


def _tag_value(value: str, parse: bool) -> AnyValue:
    if parse:
        if _INT.match(value) and -2 ** 63 <= int(value) < 2 ** 63:
            return AnyValue(int_value=int(value))
        if _FLOAT.match(value):
            return AnyValue(double_value=float(value))
        if value in ("true", "false"):
            return AnyValue(bool_value=value == "true")
    return AnyValue(string_value=value)


def _pop_first(tags: dict[str, str], keys: tuple[str, ...]) -> str:
    values = [tags.pop(key) for key in keys if key in tags]
    return values[0] if values else ""


def _resource_of(span: ZSpan, tags: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The span's resource attributes; the resource tags are taken out of `tags`."""
    attrs = {"service.name": span.local.service} if span.local and span.local.service else {}
    for key in [k for k in tags if k.startswith(RESOURCE_PREFIXES)]:
        attrs[key] = tags.pop(key)
    return tuple(sorted(attrs.items()))


def _status(tags: dict[str, str], status: Status) -> None:
    if "otel.status_code" in tags:
        code = tags.pop("otel.status_code").upper().removeprefix("STATUS_CODE_")
        status.code = STATUS_CODES.get(code, Status.STATUS_CODE_UNSET)
    status.message = tags.pop("otel.status_description", "")
    if "error" in tags:
        status.code = Status.STATUS_CODE_ERROR
        error = tags.pop("error")
        if not status.message and error not in ("", "true"):
            status.message = error


def _event(span: Span, timestamp_us: int, value: str) -> None:
    event = span.events.add(time_unix_nano=timestamp_us * 1000, name=value)
    attrs: Any = None
    if value.startswith("{"):  # the OTel SDKs: {"name": {attributes}}
        try:
            decoded = orjson.loads(value)
        except orjson.JSONDecodeError:
            decoded = None
        if isinstance(decoded, dict) and len(decoded) == 1 and isinstance(next(iter(decoded.values())), dict):
            event.name, attrs = next(iter(decoded.items()))
    elif value.count("|") >= 2:  # otelcol's exporter: name|{attributes}|dropped
        name, rest = value.split("|", 1)
        encoded, _, dropped = rest.rpartition("|")
        try:
            attrs, count = orjson.loads(encoded), int(dropped)
        except (orjson.JSONDecodeError, ValueError):
            attrs = None
        if isinstance(attrs, dict):
            event.name, event.dropped_attributes_count = name, max(0, min(count, 2 ** 32 - 1))
    if isinstance(attrs, dict):
        event.attributes.extend(KeyValue(key=str(k), value=_any(v)) for k, v in attrs.items())


def _endpoint_attrs(span: ZSpan) -> list[KeyValue]:
    out: list[KeyValue] = []
    if span.local:
        if span.local.ip:
            out.append(KeyValue(key="net.host.ip", value=AnyValue(string_value=span.local.ip)))
        if span.local.port:
            out.append(KeyValue(key="net.host.port", value=AnyValue(int_value=span.local.port)))
    if span.remote:
        if span.remote.service:
            out.append(KeyValue(key="peer.service", value=AnyValue(string_value=span.remote.service)))
        if span.remote.ip:
            out.append(KeyValue(key="net.peer.ip", value=AnyValue(string_value=span.remote.ip)))
        if span.remote.port:
            out.append(KeyValue(key="net.peer.port", value=AnyValue(int_value=span.remote.port)))
    return out


def _fill(span: Span, z: ZSpan, tags: dict[str, str], parse_string_tags: bool) -> None:
    span.trace_id, span.span_id, span.name = z.trace_id, z.span_id, z.name
    if z.parent_id and z.parent_id != z.span_id:
        span.parent_span_id = z.parent_id
    span.trace_state = tags.pop("w3c.tracestate", "")
    kind = KINDS.get(z.kind, Span.SPAN_KIND_UNSPECIFIED)
    if not z.kind and tags.get("span.kind") == "internal":
        kind = Span.SPAN_KIND_INTERNAL
        del tags["span.kind"]
    span.kind = kind
    _status(tags, span.status)
    span.attributes.extend(KeyValue(key=k, value=_tag_value(v, parse_string_tags)) for k, v in tags.items())
    span.attributes.extend(_endpoint_attrs(z))
    if z.shared:
        span.attributes.append(KeyValue(key="zipkin.shared", value=AnyValue(bool_value=True)))
    span.start_time_unix_nano = z.timestamp_us * 1000
    span.end_time_unix_nano = min((z.timestamp_us + z.duration_us) * 1000, 2 ** 64 - 1)
    if not z.timestamp_us:
        span.attributes.append(KeyValue(key=ABSENT_START, value=AnyValue(bool_value=True)))
    for timestamp, value in z.annotations:
        _event(span, timestamp, value)


def to_otlp(spans: list[ZSpan], parse_string_tags: bool = False) -> ExportTraceServiceRequest:
    """One request: a ResourceSpans per distinct resource, a ScopeSpans per scope within it."""
    request = ExportTraceServiceRequest()
    scopes: dict[tuple, Any] = {}
    resources: dict[tuple, Any] = {}
    for z in spans:
        tags = dict(z.tags)
        resource = _resource_of(z, tags)
        scope = (_pop_first(tags, SCOPE_NAME_TAGS), _pop_first(tags, SCOPE_VERSION_TAGS))
        if resource not in resources:
            rs = resources[resource] = request.resource_spans.add()
            rs.resource.attributes.extend(KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in resource)
        if (resource, scope) not in scopes:
            ss = scopes[(resource, scope)] = resources[resource].scope_spans.add()
            ss.scope.name, ss.scope.version = scope
        _fill(scopes[(resource, scope)].spans.add(), z, tags, parse_string_tags)
    return request

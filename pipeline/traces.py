"""`Traces`: the batch that flows through a traces pipeline.

It wraps the OTLP `ExportTraceServiceRequest` (upb-backed) and keeps:
- the original wire bytes while nothing changed the spans, so exporters that send OTLP
  protobuf (Kafka, OTLP) forward them without re-serialising;
- the parsed message, built lazily from the bytes on first use;
- a lazily built columnar view (`SpanColumns`) shared by every reader of the batch;
- the span count and the time the receiver took the data in.

A processor that changes spans calls `mark_changed()`, which drops the cached bytes and
columns. Merging concatenates wire bytes: OTLP's top level is a repeated field, so the
concatenation of two requests is their merged request.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

if TYPE_CHECKING:
    from pipeline.pdata.spans import SpanColumns


def count_spans(message: ExportTraceServiceRequest) -> int:
    return sum(len(scope.spans) for rs in message.resource_spans for scope in rs.scope_spans)


class OtlpBatch:
    """Wire bytes and lazily parsed message of one OTLP request; subclasses name the message."""

    __slots__ = ("_wire", "_message", "_columns", "span_count", "received_at")
    request_type: type = ExportTraceServiceRequest

    def __init__(self, message: Any = None, wire: bytes | None = None,
                 span_count: int | None = None, received_at: float | None = None) -> None:
        if message is None and wire is None:
            raise ValueError(f"{type(self).__name__} needs a message or wire bytes")
        self._message = message
        self._wire = wire
        self._columns: Any = None
        self.received_at = time.time() if received_at is None else received_at
        # `span_count` is the item count: spans for traces, data points for metrics.
        self.span_count = self.count(self.message) if span_count is None else span_count

    @staticmethod
    def count(message: Any) -> int:
        raise NotImplementedError

    @classmethod
    def from_wire(cls, wire: bytes, received_at: float | None = None):
        """Parse (and so validate) wire bytes; raises google.protobuf DecodeError when malformed."""
        message = cls.request_type.FromString(wire)
        return cls(message, wire, cls.count(message), received_at)

    @classmethod
    def from_message(cls, message: Any, received_at: float | None = None):
        return cls(message, None, None, received_at)

    @property
    def message(self) -> Any:
        if self._message is None:
            assert self._wire is not None
            self._message = self.request_type.FromString(self._wire)
        return self._message

    def clone(self):
        """A wrapper of its own for another pipeline: shares the bytes, parses again only if used."""
        return type(self)(None, self.wire(), self.span_count, self.received_at)

    @property
    def unchanged(self) -> bool:
        """True while the wire bytes are the ones received (or the ones last serialised)."""
        return self._wire is not None

    def wire(self) -> bytes:
        """The protobuf encoding: the original bytes when unchanged, otherwise serialised once."""
        if self._wire is None:
            self._wire = self.message.SerializeToString()
        return self._wire

    def mark_changed(self) -> None:
        """Call after changing items in `message`: drops cached bytes and columns, recounts."""
        self.message  # parse before dropping the bytes
        self._wire = None
        self._columns = None
        self.span_count = self.count(self.message)

    @classmethod
    def merge(cls, batches: list):
        """One batch holding every item of `batches`, by concatenating their wire bytes."""
        if len(batches) == 1:
            return batches[0]
        wire = b"".join(batch.wire() for batch in batches)
        return cls(None, wire, sum(b.span_count for b in batches), min(b.received_at for b in batches))

    def split(self, max_items: int) -> list:
        return [self]


class Traces(OtlpBatch):
    __slots__ = ()
    request_type = ExportTraceServiceRequest
    count = staticmethod(count_spans)

    @property
    def columns(self) -> "SpanColumns":
        if self._columns is None:
            from pipeline.pdata.spans import SpanColumns

            self._columns = SpanColumns.build(self.message, self._wire)
        return self._columns

    def split(self, max_spans: int) -> list["Traces"]:
        """Batches of at most `max_spans` spans each, keeping resource and scope with their spans."""
        if max_spans <= 0 or self.span_count <= max_spans:
            return [self]
        return [Traces(message, None, count, self.received_at)
                for message, count in chunk_spans(self.message, max_spans)]


def chunk_spans(message: ExportTraceServiceRequest, max_spans: int) -> Iterator[tuple[ExportTraceServiceRequest, int]]:
    """Yield requests of at most `max_spans` spans, in order, copying resource and scope headers."""
    out, count = ExportTraceServiceRequest(), 0
    for rs in message.resource_spans:
        target_rs: ResourceSpans | None = None
        for scope in rs.scope_spans:
            spans, start = scope.spans, 0
            while start < len(spans):
                if count == max_spans:
                    yield out, count
                    out, count, target_rs = ExportTraceServiceRequest(), 0, None
                if target_rs is None:
                    target_rs = _copy_header(out, rs)
                take = min(max_spans - count, len(spans) - start)
                target_scope = target_rs.scope_spans.add(schema_url=scope.schema_url)
                target_scope.scope.CopyFrom(scope.scope)
                target_scope.spans.extend(spans[start:start + take])
                start += take
                count += take
    if count:
        yield out, count


# A slice of spans planned for one chunk: (resource index, scope index, first span, end).
_Slice = list[int]
# Upper bound of a nested message field's tag and length prefix (1-byte tag, varint <= 5 bytes):
# planning with it keeps every chunk under the limit without serialising the chunk to measure it.
_NESTED_OVERHEAD = 6


def chunk_by_size(message: ExportTraceServiceRequest, max_bytes: int
                  ) -> Iterator[tuple[ExportTraceServiceRequest, int, int]]:
    """Yield (request, span count, encoded size bound) with each request at most `max_bytes`, in order.

    Splits by resource, then scope, then span, copying resource and scope headers into every
    request that holds their spans. A span too large even alone, with its headers, comes as
    a request of its own whose size bound exceeds `max_bytes`: the caller decides its fate.
    """
    for plan, size in _plan_by_size(message, max_bytes):
        yield _build(message, plan), sum(stop - start for _, _, start, stop in plan), size


def _plan_by_size(message: ExportTraceServiceRequest, max_bytes: int) -> Iterator[tuple[list[_Slice], int]]:
    plan: list[_Slice] = []
    size = 0
    for r, rs in enumerate(message.resource_spans):
        rs_cost = _NESTED_OVERHEAD + _header_size(rs.resource, rs.schema_url)
        for s, scope in enumerate(rs.scope_spans):
            scope_cost = _NESTED_OVERHEAD + _header_size(scope.scope, scope.schema_url)
            for i, span in enumerate(scope.spans):
                span_cost = _field_size(span.ByteSize())
                need = span_cost + _opening_cost(plan, r, s, rs_cost, scope_cost)
                if plan and size + need > max_bytes:
                    yield plan, size
                    plan, size = [], 0
                    need = span_cost + rs_cost + scope_cost
                if not plan and need > max_bytes:
                    yield [[r, s, i, i + 1]], need  # too large alone: a request of its own
                    continue
                if plan and plan[-1][:2] == [r, s] and plan[-1][3] == i:
                    plan[-1][3] = i + 1
                else:
                    plan.append([r, s, i, i + 1])
                size += need
    if plan:
        yield plan, size


def _opening_cost(plan: list[_Slice], r: int, s: int, rs_cost: int, scope_cost: int) -> int:
    """What adding a span of resource `r`, scope `s` to `plan` costs besides the span itself."""
    if not plan or plan[-1][0] != r:
        return rs_cost + scope_cost
    return 0 if plan[-1][1] == s else scope_cost


def _build(message: ExportTraceServiceRequest, plan: list[_Slice]) -> ExportTraceServiceRequest:
    out = ExportTraceServiceRequest()
    target_rs: ResourceSpans | None = None
    last_r = -1
    for r, s, start, stop in plan:
        rs = message.resource_spans[r]
        if r != last_r:
            target_rs, last_r = _copy_header(out, rs), r
        assert target_rs is not None
        scope = rs.scope_spans[s]
        target_scope = target_rs.scope_spans.add(schema_url=scope.schema_url)
        target_scope.scope.CopyFrom(scope.scope)
        target_scope.spans.extend(scope.spans[start:stop])
    return out


def _header_size(header: Message, schema_url: str) -> int:
    """Bytes of a resource's or scope's own fields: the header message and its schema URL."""
    return _field_size(header.ByteSize()) + _field_size(len(schema_url.encode()))


def _field_size(length: int) -> int:
    """A length-delimited field with a 1-byte tag (every field number here is below 16)."""
    return 1 + _varint_size(length) + length


def _varint_size(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def wire_ranges(wire: bytes, max_bytes: int) -> Iterator[tuple[int, int, bool]]:
    """Cut encoded request bytes between top-level `resource_spans` fields, parsing nothing.

    Yield (start, end, fits) byte ranges, in order, covering `wire`: each is a valid request
    of whole fields; `fits` is False for a single field larger than `max_bytes`, which only
    `chunk_by_size` on its parsed form can cut further. Merged batches are concatenated
    requests, so their fields are many and small: the usual case costs a varint per field.
    """
    start = pos = 0
    while pos < len(wire):
        end = _field_end(wire, pos)
        if end - start > max_bytes and pos > start:
            yield start, pos, True
            start = pos
        if end - pos > max_bytes:
            yield pos, end, False
            start = end
        pos = end
    if pos > start:
        yield start, pos, True


def _field_end(wire: bytes, pos: int) -> int:
    """Where the protobuf field starting at `pos` ends (any wire type a request may hold)."""
    tag, pos = _read_varint(wire, pos)
    wire_type = tag & 7
    if wire_type == 2:
        length, pos = _read_varint(wire, pos)
        end = pos + length
    elif wire_type == 0:
        end = _read_varint(wire, pos)[1]
    elif wire_type in (1, 5):
        end = pos + (8 if wire_type == 1 else 4)
    else:
        raise ValueError(f"unexpected protobuf wire type {wire_type} at byte {pos}")
    if end > len(wire):
        raise ValueError(f"truncated protobuf field at byte {pos}")
    return end


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise ValueError("truncated protobuf varint")


def split_by_trace(message: ExportTraceServiceRequest) -> dict[bytes, tuple[ExportTraceServiceRequest, int]]:
    """One request per trace id (in order of first appearance), with each span's resource and scope."""
    slices: dict[bytes, list[_Slice]] = {}
    for r, rs in enumerate(message.resource_spans):
        for s, scope in enumerate(rs.scope_spans):
            for i, span in enumerate(scope.spans):
                plan = slices.setdefault(span.trace_id, [])
                if plan and plan[-1][:2] == [r, s] and plan[-1][3] == i:
                    plan[-1][3] = i + 1
                else:
                    plan.append([r, s, i, i + 1])
    return {trace_id: (_build(message, plan), sum(stop - start for _, _, start, stop in plan))
            for trace_id, plan in slices.items()}


def _copy_header(out: ExportTraceServiceRequest, rs: ResourceSpans) -> ResourceSpans:
    target = out.resource_spans.add(schema_url=rs.schema_url)
    target.resource.CopyFrom(rs.resource)
    return target


def iter_spans(message: ExportTraceServiceRequest) -> Iterable:
    for rs in message.resource_spans:
        for scope in rs.scope_spans:
            yield from scope.spans

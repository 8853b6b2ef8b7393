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
from typing import TYPE_CHECKING, Iterable, Iterator

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

if TYPE_CHECKING:
    from pipeline.columns import SpanColumns


def count_spans(message: ExportTraceServiceRequest) -> int:
    return sum(len(scope.spans) for rs in message.resource_spans for scope in rs.scope_spans)


class Traces:
    __slots__ = ("_wire", "_message", "_columns", "span_count", "received_at")

    def __init__(self, message: ExportTraceServiceRequest | None = None, wire: bytes | None = None,
                 span_count: int | None = None, received_at: float | None = None) -> None:
        if message is None and wire is None:
            raise ValueError("Traces needs a message or wire bytes")
        self._message = message
        self._wire = wire
        self._columns: SpanColumns | None = None
        self.received_at = time.time() if received_at is None else received_at
        self.span_count = count_spans(self.message) if span_count is None else span_count

    @classmethod
    def from_wire(cls, wire: bytes, received_at: float | None = None) -> "Traces":
        """Parse (and so validate) wire bytes; raises google.protobuf DecodeError when malformed."""
        message = ExportTraceServiceRequest.FromString(wire)
        return cls(message, wire, count_spans(message), received_at)

    @classmethod
    def from_message(cls, message: ExportTraceServiceRequest, received_at: float | None = None) -> "Traces":
        return cls(message, None, None, received_at)

    @property
    def message(self) -> ExportTraceServiceRequest:
        if self._message is None:
            assert self._wire is not None
            self._message = ExportTraceServiceRequest.FromString(self._wire)
        return self._message

    def clone(self) -> "Traces":
        """A wrapper of its own for another pipeline: shares the bytes, parses again only if used."""
        return Traces(None, self.wire(), self.span_count, self.received_at)

    @property
    def unchanged(self) -> bool:
        """True while the wire bytes are the ones received (or the ones last serialised)."""
        return self._wire is not None

    def wire(self) -> bytes:
        """The protobuf encoding: the original bytes when unchanged, otherwise serialised once."""
        if self._wire is None:
            self._wire = self.message.SerializeToString()
        return self._wire

    @property
    def columns(self) -> "SpanColumns":
        if self._columns is None:
            from pipeline.columns import SpanColumns

            self._columns = SpanColumns.build(self.message)
        return self._columns

    def mark_changed(self) -> None:
        """Call after changing spans in `message`: drops cached bytes and columns, recounts."""
        self.message  # parse before dropping the bytes
        self._wire = None
        self._columns = None
        self.span_count = count_spans(self.message)

    @classmethod
    def merge(cls, batches: list["Traces"]) -> "Traces":
        """One batch holding every span of `batches`, by concatenating their wire bytes."""
        if len(batches) == 1:
            return batches[0]
        wire = b"".join(batch.wire() for batch in batches)
        return cls(None, wire, sum(b.span_count for b in batches), min(b.received_at for b in batches))

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


def _copy_header(out: ExportTraceServiceRequest, rs: ResourceSpans) -> ResourceSpans:
    target = out.resource_spans.add(schema_url=rs.schema_url)
    target.resource.CopyFrom(rs.resource)
    return target


def iter_spans(message: ExportTraceServiceRequest) -> Iterable:
    for rs in message.resource_spans:
        for scope in rs.scope_spans:
            yield from scope.spans

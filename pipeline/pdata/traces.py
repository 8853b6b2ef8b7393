"""`Traces`: the batch that flows through a traces pipeline.

It wraps the OTLP `ExportTraceServiceRequest` (upb-backed) and keeps:
- the original wire bytes while nothing changed the spans, so exporters that send OTLP
  protobuf (Kafka, OTLP) forward them without re-serialising;
- the parsed message, built lazily from the bytes on first use;
- a lazily built columnar view (`SpanColumns`) shared by every reader of the batch;
- the span count (`item_count`) and the time the receiver took the data in (`received_at`).

A processor that changes spans calls `mark_changed()`, which drops the cached bytes and
columns. Merging concatenates wire bytes: OTLP's top level is a repeated field, so the
concatenation of two requests is their merged request (batch.py: `OtlpBatch`).
"""
from __future__ import annotations

from typing import Iterator

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from pipeline.pdata.batch import OtlpBatch
from pipeline.pdata.spans import SpanColumns


def count_spans(message: ExportTraceServiceRequest) -> int:
    return sum(len(scope.spans) for rs in message.resource_spans for scope in rs.scope_spans)


class Traces(OtlpBatch[ExportTraceServiceRequest]):
    __slots__ = ("_captured",)
    request_type = ExportTraceServiceRequest
    count = staticmethod(count_spans)

    def __init__(self, message: ExportTraceServiceRequest | None = None, wire: bytes | None = None,
                 item_count: int | None = None, received_at: float | None = None) -> None:
        super().__init__(message, wire, item_count, received_at)
        self._captured: frozenset[str] = frozenset()

    @property
    def columns(self) -> SpanColumns:
        """The batch's columnar view, built on first use and shared by every reader."""
        if self._columns is None:
            # The columns walk the wire bytes (compiled). They get the parsed message when the batch
            # has one (a receiver's parse), else parse on their own if a reader wants upb objects;
            # never a reference back to the batch, which would make a cycle only the GC frees.
            self._columns = SpanColumns.build(self._message, self.wire(), self._captured)
        return self._columns

    def capture(self, keys: frozenset[str]) -> None:
        """Declare span attributes some reader of this batch reads typed, so the one attribute
        pass fills them (spans.py: attribute capture). Cheap: records the keys, builds nothing."""
        if not keys <= self._captured:
            self._captured = self._captured | keys
            if self._columns is not None:
                self._columns.capture(keys)

    def replace_wire(self, wire: bytes) -> None:
        """Take `wire` as the batch's encoding: the same spans, changed by a processor that
        rewrote the bytes itself (genai). The parsed message and the columns are dropped."""
        self._wire = wire
        self._message = None
        self._columns = None

    def split(self, max_spans: int) -> list[Traces]:
        """Batches of at most `max_spans` spans each, keeping resource and scope with their spans."""
        if max_spans <= 0 or self.item_count <= max_spans:
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
                    target_rs = copy_resource_header(out, rs)
                take = min(max_spans - count, len(spans) - start)
                target_scope = target_rs.scope_spans.add(schema_url=scope.schema_url)
                target_scope.scope.CopyFrom(scope.scope)
                target_scope.spans.extend(spans[start:start + take])
                start += take
                count += take
    if count:
        yield out, count


def copy_resource_header(out: ExportTraceServiceRequest, rs: ResourceSpans) -> ResourceSpans:
    """Add to `out` a ResourceSpans with `rs`'s resource and schema URL and no scopes yet."""
    target = out.resource_spans.add(schema_url=rs.schema_url)
    target.resource.CopyFrom(rs.resource)
    return target


def iter_spans(message: ExportTraceServiceRequest) -> Iterator[Span]:
    """Every span of `message`, in order."""
    for rs in message.resource_spans:
        for scope in rs.scope_spans:
            yield from scope.spans

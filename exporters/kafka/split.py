"""Cutting span batches to fit Kafka messages, and one message per trace.

Kafka refuses a message over the producer's `max_message_bytes`; the exporter (records.py)
sends each batch as requests that fit:
- `wire_ranges`: cut the encoded request between its top-level `resource_spans` fields,
  parsing nothing (merged batches are concatenated requests, so the cut points are many);
- `chunk_by_size`: a request still too large is split by resource, then scope, then span,
  each piece carrying its resource and scope headers, with its size bounded without
  serialising it to measure;
- `split_by_key`: one request per record key (pipeline/partitioning.py: `partition_by`, and
  `partition_traces_by_id`, which is `partition_by: trace_id`).
"""
from __future__ import annotations

from typing import Iterator, Sequence

from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from pipeline.pdata.traces import copy_resource_header
from pipeline.pdata.wire import field_end, varint_size

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
            target_rs, last_r = copy_resource_header(out, rs), r
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
    return 1 + varint_size(length) + length


def wire_ranges(wire: bytes, max_bytes: int) -> Iterator[tuple[int, int, bool]]:
    """Cut encoded request bytes between top-level `resource_spans` fields, parsing nothing.

    Yield (start, end, fits) byte ranges, in order, covering `wire`: each is a valid request
    of whole fields; `fits` is False for a single field larger than `max_bytes`, which only
    `chunk_by_size` on its parsed form can cut further. Merged batches are concatenated
    requests, so their fields are many and small: the usual case costs a varint per field.
    """
    start = pos = 0
    while pos < len(wire):
        end = field_end(wire, pos)
        if end - start > max_bytes and pos > start:
            yield start, pos, True
            start = pos
        if end - pos > max_bytes:
            yield pos, end, False
            start = end
        pos = end
    if pos > start:
        yield start, pos, True


def split_by_key(message: ExportTraceServiceRequest, keys: Sequence[bytes | None]
                 ) -> dict[bytes, tuple[ExportTraceServiceRequest, int]]:
    """One request per distinct key (in order of first appearance), each span with its resource
    and scope; `keys` holds one key per span in the order of the message (SpanColumns order),
    and a span whose key is None is left out."""
    slices: dict[bytes, list[_Slice]] = {}
    flat = 0
    for r, rs in enumerate(message.resource_spans):
        for s, scope in enumerate(rs.scope_spans):
            for i in range(len(scope.spans)):
                key = keys[flat]
                flat += 1
                if key is None:
                    continue
                plan = slices.setdefault(key, [])
                if plan and plan[-1][:2] == [r, s] and plan[-1][3] == i:
                    plan[-1][3] = i + 1
                else:
                    plan.append([r, s, i, i + 1])
    return {key: (_build(message, plan), sum(stop - start for _, _, start, stop in plan))
            for key, plan in slices.items()}

"""Which spans of a batch a candidate match lies in, read from the wire bytes without parsing them.

The detectors' combined candidates are searched once over the whole request; most batches have no hit and
are done. Where there are hits, this walks the protobuf framing (ExportTraceServiceRequest →
ResourceSpans → ScopeSpans → Span: length-delimited fields, so each level is a run of
tag, length, bytes) and names only the resources, scopes and spans whose bytes overlap a
hit; the processor then walks those alone. A hit that straddles two fields (framing bytes
can look like text) names both, so nothing it could hide is skipped.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Iterator

from pipeline.traces import _read_varint

LENGTH_DELIMITED = 2


@dataclass
class ScopePlan:
    header: bool = False                            # the scope's own attributes
    spans: list[int] = field(default_factory=list)  # indexes of spans to walk


@dataclass
class ResourcePlan:
    header: bool = False                            # the resource's attributes
    scopes: dict[int, ScopePlan] = field(default_factory=dict)


class Hits:
    """Sorted, non-overlapping (start, end) ranges, as `finditer` gives them."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.starts = [start for start, _ in ranges]
        self.ends = [end for _, end in ranges]

    def overlap(self, start: int, end: int) -> bool:
        index = bisect_right(self.ends, start)  # the first hit ending after `start`
        return index < len(self.starts) and self.starts[index] < end

    def last_end_before(self, end: int) -> int:
        """The end of the last hit starting before `end` (or -1)."""
        index = bisect_right(self.starts, end - 1) - 1
        return self.ends[index] if index >= 0 else -1


def fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, value start, value end) of each length-delimited field in data[start:end];
    other wire types are stepped over."""
    pos = start
    while pos < end:
        tag = data[pos]
        if tag < 0x80:  # one-byte tags and lengths are the rule: no call for them
            pos += 1
        else:
            tag, pos = _read_varint(data, pos)
        wire_type = tag & 7
        if wire_type == LENGTH_DELIMITED:
            length = data[pos]
            if length < 0x80:
                pos += 1
            else:
                length, pos = _read_varint(data, pos)
            yield tag >> 3, pos, pos + length
            pos += length
        elif wire_type == 0:
            pos = _read_varint(data, pos)[1]
        elif wire_type in (1, 5):
            pos += 8 if wire_type == 1 else 4
        else:
            raise ValueError(f"unexpected protobuf wire type {wire_type} at byte {pos}")


def plan(wire: bytes, hits: Hits) -> dict[int, ResourcePlan]:
    """Resource index → what to walk in it, for every resource whose bytes a hit overlaps."""
    plans: dict[int, ResourcePlan] = {}
    for r, (_, rs_start, rs_end) in enumerate(fields(wire, 0, len(wire))):
        if not hits.overlap(rs_start, rs_end):
            continue
        resource = plans[r] = ResourcePlan()
        scope_index = 0
        for number, start, end in fields(wire, rs_start, rs_end):
            if number == 1:  # Resource
                resource.header = resource.header or hits.overlap(start, end)
            elif number == 2:  # ScopeSpans
                if hits.overlap(start, end):
                    resource.scopes[scope_index] = _scope(wire, start, end, hits)
                scope_index += 1
    return plans


def _scope(wire: bytes, start: int, end: int, hits: Hits) -> ScopePlan:
    scope = ScopePlan()
    last = hits.last_end_before(end)  # past the last hit in this scope no span needs reading
    span_index = 0
    for number, value_start, value_end in fields(wire, start, end):
        if value_start >= last:
            break
        if number == 1:  # InstrumentationScope
            scope.header = scope.header or hits.overlap(value_start, value_end)
        elif number == 2:  # Span
            if hits.overlap(value_start, value_end):
                scope.spans.append(span_index)
            span_index += 1
    return scope

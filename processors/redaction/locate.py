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

from pipeline.pdata.wire import fields


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

"""What the fuzz tests expect back from the daemon, worked out from what they sent.

`verdict(span)` sorts a span the way the receiver's promise does: `bad` (ids of the wrong
length: refused through partial_success), `good` (must be stored as sent), or `either` (a
value some backend cannot hold, such as a time at or past 2^63 ns, or an all-zero id: the
receiver may refuse it through partial_success, or take it; both keep the promise).

`Ledger` adds up, over every request a test sent, the spans that must be stored, those that
may be, and how many are stored in all; `check(stored)` compares that with what the `file`
exporter wrote, span by span (each span keyed by its full bytes with its resource and scope).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Literal

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from testkit.otlp_spans import each_span

Verdict = Literal["good", "bad", "either"]
LIMIT = 2**63  # ns: past it, a time is not a signed 64-bit number (DateTime64 and most stores)


def verdict(span: Span) -> Verdict:
    if len(span.trace_id) != 16 or len(span.span_id) != 8 or len(span.parent_span_id) not in (0, 8):
        return "bad"
    event_times = (event.time_unix_nano for event in span.events)
    if max(span.start_time_unix_nano, span.end_time_unix_nano, *event_times) >= LIMIT:
        return "either"
    if not any(span.trace_id) or not any(span.span_id):
        return "either"
    return "good"


def span_key(rs: ResourceSpans, ss: ScopeSpans, span: Span) -> bytes:
    """One span with its resource and scope, as deterministic bytes."""
    one = ResourceSpans(resource=rs.resource, schema_url=rs.schema_url, scope_spans=[
        ScopeSpans(scope=ss.scope, schema_url=ss.schema_url, spans=[span])])
    return one.SerializeToString(deterministic=True)


def stored_keys(requests_: Iterable[ExportTraceServiceRequest]) -> Counter[bytes]:
    return Counter(span_key(rs, ss, span) for rs, ss, span in each_span(requests_))


@dataclass
class Ledger:
    must: Counter[bytes] = field(default_factory=Counter)
    maybe: Counter[bytes] = field(default_factory=Counter)
    low: int = 0     # fewest spans that must be stored in all
    high: int = 0    # most that may be
    accepted_requests: int = 0

    def accepted(self, message: ExportTraceServiceRequest, rejected: int) -> None:
        """An OK answer with `rejected` spans refused through partial_success."""
        sorted_: dict[Verdict, list[bytes]] = {"good": [], "bad": [], "either": []}
        for rs, ss, span in each_span([message]):
            sorted_[verdict(span)].append(span_key(rs, ss, span))
        bad, either = len(sorted_["bad"]), len(sorted_["either"])
        assert bad <= rejected <= bad + either, (
            f"partial_success rejected {rejected} spans; {bad} have invalid ids and {either} more may be refused")
        kept = sum(len(keys) for keys in sorted_.values()) - rejected
        self.must.update(sorted_["good"])
        self.maybe.update(sorted_["either"])
        self.low += kept
        self.high += kept
        self.accepted_requests += 1

    def refused_retryably(self, message: ExportTraceServiceRequest | None) -> None:
        """503 / 429 / UNAVAILABLE / RESOURCE_EXHAUSTED: none of it should be kept, but a
        fan-out that refused after one pipeline took the batch may have kept some."""
        if message is not None:
            keys = [span_key(rs, ss, span) for rs, ss, span in each_span([message])]
            self.maybe.update(keys)
            self.high += len(keys)

    def check(self, stored: Counter[bytes]) -> None:
        missing = self.must - stored
        assert not missing, f"{sum(missing.values())} good spans answered OK are not stored"
        unexpected = (stored - self.must) - self.maybe
        assert not unexpected, f"{sum(unexpected.values())} stored spans were refused or never sent"
        total = sum(stored.values())
        assert self.low <= total <= self.high, f"{total} spans stored; expected {self.low}..{self.high}"

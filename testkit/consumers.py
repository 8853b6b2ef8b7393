"""In-process consumers for unit tests of the core: one that records what it took, one that refuses.

A refusing consumer stands in for a full exporter queue or a destination that is down: a
fault the core must handle and that a real exporter would show only through timing. Each
records the span ids of every batch it was offered, so a test compares what went in with
what came out span by span. `spans()` builds a small trace batch with known span ids.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.errors import PermanentError, Refused
from pipeline.pdata.traces import Traces
from pipeline.telemetry.metrics import REGISTRY

_ids = itertools.count(1)


def spans(count: int, service: str = "agent", received_at: float = 0.0) -> Traces:
    """A batch of `count` spans with fresh, unique span ids (in one resource and scope)."""
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for _ in range(count):
        scope.spans.add(trace_id=b"\x01" * 16, span_id=next(_ids).to_bytes(8, "big"), name=f"{service}.op")
    return Traces.from_message(request, received_at=received_at)


def span_ids(batch: Any) -> list[bytes]:
    """The span ids of a trace batch in wire order, read back from its bytes."""
    message = ExportTraceServiceRequest.FromString(batch.wire())
    return [s.span_id for rs in message.resource_spans for ss in rs.scope_spans for s in ss.spans]


@dataclass
class Recording:
    """Takes every batch and keeps it; `ids` is every span id taken, in order."""

    name: str = "recording"
    batches: list[Any] = field(default_factory=list)

    async def consume(self, batch: Any) -> None:
        self.batches.append(batch)

    @property
    def ids(self) -> list[bytes]:
        return [i for batch in self.batches for i in span_ids(batch)]

    @property
    def sizes(self) -> list[int]:
        return [len(span_ids(batch)) for batch in self.batches]


@dataclass
class Refusing(Recording):
    """Refuses retryably (as a full queue does) while `refuse` says so, then takes batches.

    `refuse` is either a bool the test flips or a count of refusals still to give.
    `offered` counts every call, taken or not.
    """

    refuse: bool | int = True
    retry_after: float = 1.0
    overload: bool = False
    offered: int = 0

    async def consume(self, batch: Any) -> None:
        self.offered += 1
        if self._refusing():
            raise Refused(f"{self.name} is full", retry_after=self.retry_after, overload=self.overload)
        await super().consume(batch)

    def _refusing(self) -> bool:
        if isinstance(self.refuse, bool):
            return self.refuse
        if self.refuse > 0:
            self.refuse -= 1
            return True
        return False


@dataclass
class Rejecting(Recording):
    """Refuses every batch permanently (bad data): nothing is ever taken."""

    offered: int = 0

    async def consume(self, batch: Any) -> None:
        self.offered += 1
        raise PermanentError(f"{self.name} rejects this data", error_type="invalid_data")


def sample(name: str, **labels: str) -> float:
    """The current value of one of the daemon's own metrics in this process (0 when never set)."""
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def unique(prefix: str, _counter: Callable[[], int] = itertools.count(1).__next__) -> str:
    """A component name no other test used: the metrics registry is process-wide."""
    return f"{prefix}{_counter()}"

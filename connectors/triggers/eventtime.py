"""Event time for the trigger detectors: batches judged at their spans' end time, in that order.

A batch's event time is the latest end (or start, for a span still open) of its spans, or of
its metric points' times. It is capped at the batch's receive time: a sender whose clock runs
ahead of ours must not push the watermark past everyone else's spans. A batch more than
`max_clock_skew` before its receive time (a sender's clock far behind, data replayed long
after) is judged at its receive time instead; both are counted (`clock_skew`).

`EventOrder` holds each batch until the watermark passes its event time, then hands the
batches to the detectors in event-time order and the evaluations at fixed points of event
time (multiples of `evaluation_interval`), so the same batches give the same trigger events
whatever order they arrived in, as long as none came later than `allowed_lateness`.

The watermark is the latest event time seen minus `allowed_lateness`; between batches it moves
on with the connector's clock (a quiet stream still closes its windows and resolves its
episodes). A batch whose event time is at or before the point already evaluated is late: it
is counted (`agentdbg_trigger_late_spans_total`) and left out of the windows; it still went on
through the pipeline. The buffer is bounded (`max_buffered_spans`): past it the oldest batches
are judged at once (the watermark jumps to them), which is counted as `forced`.
"""
from __future__ import annotations

import copy
import heapq
import itertools
import math
from dataclasses import dataclass
from typing import Any, Iterator, TypeVar

from pipeline.clock import Clock
from pipeline.pdata.batch import OtlpBatch
from pipeline.pdata.metrics import Metrics
from pipeline.pdata.traces import Traces

B = TypeVar("B", bound=OtlpBatch[Any])
MAX_STEPS = 240  # evaluations per tick at most; a longer jump skips the points between


def traces_time(batch: Traces) -> float:
    """The latest end (or start) of the batch's spans, in seconds."""
    cols = batch.columns
    if not len(cols):
        return batch.received_at
    return max(max(cols.end_ns), max(cols.start_ns)) / 1e9


def metrics_time(batch: Metrics) -> float:
    """The latest time of the batch's gauge and sum points, in seconds (its receive time without any)."""
    latest = 0
    for rm in batch.message.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                data = metric.WhichOneof("data")
                if data in ("gauge", "sum"):
                    points = getattr(metric, data).data_points
                    if points:
                        latest = max(latest, max(p.time_unix_nano for p in points))
    return latest / 1e9 if latest else batch.received_at


def retimed(batch: B, at: float) -> B:
    """A view of `batch` whose `received_at` is its event time (the time detectors fold it at);
    it shares the message, wire bytes and columns."""
    view = copy.copy(batch)
    view.received_at = at
    return view


@dataclass
class Step:
    """What `EventOrder.due` hands on next: a batch to observe, or an evaluation at `at`."""

    at: float
    batch: Traces | Metrics | None = None


class EventOrder:
    def __init__(self, lateness: float, max_skew: float, max_spans: int, interval: float, clock: Clock) -> None:
        self.lateness, self.max_skew, self.max_spans, self.interval = lateness, max_skew, max_spans, interval
        self.clock = clock
        self.heap: list[tuple[float, int, Traces | Metrics]] = []
        self._order = itertools.count()
        self.spans = 0  # items (spans, points) held
        self.latest: float | None = None  # the latest event time seen
        self._latest_at = 0.0  # clock.monotonic() when `latest` last moved
        self.frontier: float | None = None  # the last evaluation point: everything up to it is judged
        self.counts = {"late_spans": 0, "late_batches": 0, "clock_skew": 0, "forced": 0}

    # -- arrival (hot path) ----------------------------------------------------------------------
    def event_time(self, batch: Traces | Metrics) -> float:
        at = traces_time(batch) if isinstance(batch, Traces) else metrics_time(batch)
        received = batch.received_at
        if at > received or at < received - self.max_skew:
            at = received
            self.counts["clock_skew"] += 1
        return at

    def offer(self, batch: Traces | Metrics) -> bool:
        """Hold `batch` for judging at its event time; False (counted) when it came too late."""
        at = self.event_time(batch)
        if self.frontier is not None and at <= self.frontier:
            self.counts["late_spans"] += batch.item_count
            self.counts["late_batches"] += 1
            return False
        heapq.heappush(self.heap, (at, next(self._order), retimed(batch, at)))
        self.spans += batch.item_count
        if self.latest is None or at > self.latest:
            self.latest, self._latest_at = at, self.clock.monotonic()
        return True

    # -- evaluation (off the hot path) -----------------------------------------------------------
    def watermark(self) -> float | None:
        """The event time up to which windows may close: the latest event time seen minus the
        allowed lateness, moved on by the clock since that event time was seen."""
        if self.latest is None:
            return None
        return self.latest - self.lateness + max(0.0, self.clock.monotonic() - self._latest_at)

    def due(self, flush: bool = False) -> Iterator[Step]:
        """The batches and evaluations the watermark has passed, in event-time order (`flush`:
        everything held, as on shutdown)."""
        target = self._target(flush)
        if target is None:
            return
        frontier = self.frontier
        if frontier is None:
            first = self.heap[0][0] if self.heap else target
            frontier = math.floor(first / self.interval) * self.interval - self.interval
        steps = math.floor((target - frontier) / self.interval + 1e-9)
        if steps > MAX_STEPS:  # a long gap (a restart, a quiet night): skip to its last points
            frontier += (steps - MAX_STEPS) * self.interval
            steps = MAX_STEPS
        for n in range(1, steps + 1):
            point = frontier + n * self.interval
            while self.heap and self.heap[0][0] <= point:
                yield self._pop()
            self.frontier = point
            yield Step(point)

    def _target(self, flush: bool) -> float | None:
        watermark = self.watermark()
        if watermark is None:
            return None
        if flush and self.heap:
            watermark = max(watermark, max(at for at, _, _ in self.heap) + self.interval)
        if self.spans > self.max_spans:
            excess = self.spans - self.max_spans
            for at, _, batch in heapq.nsmallest(len(self.heap), self.heap):
                watermark = max(watermark, at)
                excess -= batch.item_count
                self.counts["forced"] += 1
                if excess <= 0:
                    break
        return watermark

    def _pop(self) -> Step:
        at, _, batch = heapq.heappop(self.heap)
        self.spans -= batch.item_count
        return Step(at, batch)

    def take_from(self, previous: EventOrder) -> None:
        """Carry the held batches and the clock over a reload (the new config's bounds apply)."""
        self.heap, self.spans, self._order = previous.heap, previous.spans, previous._order
        self.latest, self._latest_at, self.frontier = previous.latest, previous._latest_at, previous.frontier

    # -- checkpoints -----------------------------------------------------------------------------
    def snapshot(self, wall: float) -> dict[str, float]:
        """The clock's state at wall time `wall` (what a restart resumes from)."""
        if self.latest is None or self.frontier is None:
            return {}
        return {"latest": self.latest, "frontier": self.frontier,
                "idle": max(0.0, self.clock.monotonic() - self._latest_at), "wall": wall}

    def restore(self, state: dict[str, float], wall: float) -> None:
        """Resume from `snapshot`: the time since it was written counts as idle time, so the
        watermark goes on from where it was rather than from the first batch after the restart."""
        if not state or (self.latest is not None and self.latest >= state["latest"]):
            return
        idle = state["idle"] + max(0.0, wall - state["wall"])
        self.latest, self._latest_at = state["latest"], self.clock.monotonic() - idle
        self.frontier = max(self.frontier or state["frontier"], state["frontier"])

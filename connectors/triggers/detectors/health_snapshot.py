"""health_snapshot: every `snapshot_interval` (30 s), one `health_snapshot` document per canary
and baseline subject, for the canary analysis of the safety consumer.

Which subjects: spans whose resource has `deployment.canary` (`true` / "true" marks the
canary; `canary_attribute`) or a `service.version` (`version_attribute`; a versioned
service without the canary mark is a baseline). Subject: `service`, `service_version`
(when there is one), `canary` (bool). Spans of unmarked resources are not looked at.

What a snapshot carries (`metrics`), over the spans received in the interval:
`error_rate` (error spans / spans), `latency_p95_s` (95th percentile of the durations of
root and SERVER spans, from a per-subject reservoir sample of at most `reservoir_size`
durations; null without such spans), `memory_bytes` (the memory_leak detector's latest
reading for the subject's instances or version, largest process; null when it has none or
is off) and `spans`. Status `snapshot`, severity `info`, `observed` = the error rate (unit
`ratio`, threshold 0): snapshots are emitted as they are, not through episodes; a subject
with no spans in an interval gets none. The episode id is per subject and interval.

Hot path: per resource, not per span: a resource's spans are contiguous in SpanColumns, so
its span and error counts are a slice length and a `list.count`, and its root/server
durations are picked by C-level `map`/`compress` over the slice. Bounded work: when a
subject has more than `sample_above` (256) spans in a batch, the p95 reads a deterministic
stride sample of them (every k-th span, k = ceil(spans / sample_above), running on across
the subject's resources from an offset that rotates batch by batch), each sampled duration
weighted by k in the reservoir (Chao's weighted reservoir, which with weight 1 is the plain
algorithm R); the span and error counts stay exact. At five batches a second that still
offers the reservoir over a thousand spans a second per subject.

Bounded state: at most `max_subjects` (1,000) subjects per interval, each with a reservoir of
`reservoir_size` durations and at most `max_instances` (1,000) instance ids; a new subject
(instance) past that is left out of the interval
(`agentdbg_trigger_state_evictions_total{reason="subject_untracked"}`, `"instance_untracked"`).
Everything is emptied at each snapshot.
"""
from __future__ import annotations

import random
from itertools import compress
from operator import not_, or_
from typing import Any

from pydantic import PositiveInt

from connectors.triggers.columnar import stride_for
from connectors.triggers.detectors.base import BoundedConfig, Detector, Severity
from connectors.triggers.detectors.memory_leak import MemoryLeakDetector
from connectors.triggers.event import Observation, document, stable_id
from pipeline.config.units import Duration
from pipeline.pdata.spans import SpanColumns
from pipeline.pdata.traces import Traces

SERVER, STATUS_ERROR = 2, 2
SubjectKey = tuple[str, str, bool]  # service, version, canary


class HealthSnapshotConfig(BoundedConfig):
    severity: Severity = "info"
    snapshot_interval: Duration = 30.0
    reservoir_size: PositiveInt = 1024
    sample_above: PositiveInt = 256
    max_subjects: PositiveInt = 1000
    max_instances: PositiveInt = 1000
    canary_attribute: str = "deployment.canary"
    version_attribute: str = "service.version"


class Interval:
    """One subject's spans of the current interval."""

    __slots__ = ("spans", "errors", "seen", "durations", "instances", "last")

    def __init__(self) -> None:
        self.spans = self.errors = self.seen = 0
        self.durations: list[int] = []
        self.instances: set[str] = set()
        self.last = 0.0

    def sample(self, durations: list[int], size: int, rng: random.Random, weight: int = 1) -> None:
        """Weighted reservoir sampling (Chao): each duration stands for `weight` spans and is
        kept with probability size × weight / (weight seen so far), in a random slot, so every
        span has the same chance to be represented. With weight 1 this is algorithm R."""
        room = size - len(self.durations)
        if room > 0:
            self.durations.extend(durations[:room])
            self.seen += min(room, len(durations)) * weight
            durations = durations[room:]
        random_, kept = rng.random, self.durations
        for duration in durations:
            self.seen += weight
            r = random_() * self.seen
            if r < size * weight:
                kept[int(r / weight)] = duration

    def p95_seconds(self) -> float | None:
        if not self.durations:
            return None
        ordered = sorted(self.durations)
        return ordered[max(0, -(-len(ordered) * 95 // 100) - 1)] / 1e9


class HealthSnapshotDetector(Detector[HealthSnapshotConfig]):
    kind = "health_snapshot"

    def __init__(self, config: HealthSnapshotConfig) -> None:
        super().__init__(config)
        self.intervals: dict[SubjectKey, Interval] = {}
        self.interval_start: float | None = None
        self.rng = random.Random(0x5EED)
        self._batches = 0  # batches seen: rotates where the stride samples start

    # -- hot path --------------------------------------------------------------------------------
    def observe(self, batch: Traces) -> None:
        cols = batch.columns
        marks = self._marks(cols)
        if not any(marks):
            return
        if self.interval_start is None:
            self.interval_start = batch.received_at
        starts = cols.resource_starts
        slices = [(mark, lo, hi) for mark, lo, hi in zip(marks, starts, starts[1:]) if mark is not None]
        steps = self._steps(slices)
        phase = dict.fromkeys(steps, self._batches)  # the stride runs on across a subject's resources
        self._batches += 1
        for mark, lo, hi in slices:
            if lo < hi:
                step = steps[mark[0]]
                skip = -phase[mark[0]] % step
                phase[mark[0]] += hi - lo
                self._fold(cols, mark, lo, hi, batch.received_at, step, lo + skip)

    def _steps(self, slices: list[tuple[tuple[SubjectKey, str], int, int]]) -> dict[SubjectKey, int]:
        """Per subject, the stride of its p95 sample in this batch (1: every span): a subject
        usually has many resources in a batch (one per request merged by the batch processor)."""
        spans: dict[SubjectKey, int] = {}
        for (key, _), lo, hi in slices:
            spans[key] = spans.get(key, 0) + hi - lo
        return {key: stride_for(count, self.config.sample_above) for key, count in spans.items()}

    def _marks(self, cols: SpanColumns) -> list[tuple[SubjectKey, str] | None]:
        """Per resource: (subject, instance id) when it is marked canary or versioned."""
        out: list[tuple[SubjectKey, str] | None] = []
        for service, attrs in zip(cols.resource_services, cols.resource_attribute_maps):
            canary = attrs.get(self.config.canary_attribute, "").lower() == "true"
            version = attrs.get(self.config.version_attribute, "")
            out.append(((service, version, canary), attrs.get("service.instance.id", ""))
                       if canary or version else None)
        return out

    def _fold(self, cols: SpanColumns, mark: tuple[SubjectKey, str], lo: int, hi: int, now: float, step: int,
              first: int) -> None:
        key, instance = mark
        interval = self.intervals.get(key)
        if interval is None:
            if not self.admit(self.intervals, key):
                return
            self.intervals[key] = interval = Interval()
        interval.spans += hi - lo
        interval.errors += cols.status_code[lo:hi].count(STATUS_ERROR)
        sample = slice(first, hi, step)
        roots = map(or_, map(SERVER.__eq__, cols.kind[sample]), map(not_, cols.parent_span_id[sample]))
        interval.sample(list(compress(cols.duration_ns[sample], roots)), self.config.reservoir_size, self.rng, step)
        if instance and (instance in interval.instances or len(interval.instances) < self.config.max_instances):
            interval.instances.add(instance)
        elif instance:
            self.evict("instance_untracked")
        interval.last = now

    # -- emission --------------------------------------------------------------------------------
    def emit(self, now: float, detector: str) -> list[dict[str, Any]]:
        if self.interval_start is None:
            self.interval_start = now
        if now - self.interval_start < self.config.snapshot_interval:
            return []
        start, self.interval_start = self.interval_start, now
        intervals, self.intervals = self.intervals, {}
        return [self._document(key, interval, start, now, detector) for key, interval in intervals.items()]

    def _document(self, key: SubjectKey, interval: Interval, start: float, now: float,
                  detector: str) -> dict[str, Any]:
        service, version, canary = key
        subject: dict[str, Any] = {"service": service}
        if version:
            subject["service_version"] = version
        subject["canary"] = canary
        error_rate = round(interval.errors / interval.spans, 6)
        p95 = interval.p95_seconds()
        memory = self._memory(service, version, interval.instances)
        metrics = {"error_rate": error_rate, "latency_p95_s": None if p95 is None else round(p95, 6),
                   "memory_bytes": memory, "spans": interval.spans}
        label = f"{service} {version} " if version else f"{service} "
        obs = Observation(
            self.kind, subject, error_rate, 0.0, "ratio", (start, now), self.config.severity,
            f"{label}({'canary' if canary else 'baseline'}): {interval.spans} spans, {error_rate:.1%} errors, "
            f"p95 {'-' if p95 is None else f'{p95:.3f}s'} in the last {now - start:.0f}s", metrics=metrics)
        return document(obs, "snapshot", stable_id(obs.key, start), start, interval.last, now, detector)

    def _memory(self, service: str, version: str, instances: set[str]) -> float | None:
        memory = self.peers.get("memory_leak")
        return memory.latest_bytes(service, version, instances) if isinstance(memory, MemoryLeakDetector) else None

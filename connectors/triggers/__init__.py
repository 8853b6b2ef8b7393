"""`triggers` connector: spans (and OTLP metrics) in, `agentdbg.trigger/v1` events out.

Use it as an exporter of a traces (and metrics) pipeline and as a receiver of an events
pipeline:

    connectors:
      triggers: {}
    service:
      pipelines:
        traces:  {receivers: [otlp], processors: [batch], exporters: [chdb, triggers]}
        events:  {receivers: [triggers], exporters: [kafka/triggers]}

What it promises: on the span path it only folds each batch into per-detector partial
aggregates (it never refuses or delays spans; a detector error is logged and counted, and
the batch still counts as taken). Every `evaluation_interval` it evaluates the windows off
the hot path and emits one firing event per episode and one resolved event when the
condition clears (hysteresis: `resolve_ratio`, `resolve_after`); documents that are not
episodes (`health_snapshot`) come from a detector's `emit` hook as they are. When the events pipeline
refuses, events wait in a bounded buffer (`max_pending_events`) and are re-offered; past
the bound the oldest are dropped, counted and logged. Every detector's state is bounded
(`max_subjects`, and deadlock's `max_traces` / `max_spans`, infinite_loop's `max_tracked`;
each detector's docstring says what it lets go of first), so memory does not grow with the
number of distinct services, span names, sessions or traces; what is let go of is counted in
`agentdbg_trigger_state_evictions_total{detector, reason}`. Windowed state survives a SIGHUP
reload (it is handed to the new instance); it starts empty after a process restart.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, TypeVar

from connectors.triggers.config import TriggersConfig
from connectors.triggers.detectors.base import Detector
from connectors.triggers.detectors.context_overflow import ContextOverflowDetector
from connectors.triggers.detectors.cost_budget import CostBudgetDetector
from connectors.triggers.detectors.deadlock import DeadlockDetector
from connectors.triggers.detectors.dependency_failure import DependencyFailureDetector
from connectors.triggers.detectors.error_rate_spike import ErrorRateSpikeDetector
from connectors.triggers.detectors.health_snapshot import HealthSnapshotDetector
from connectors.triggers.detectors.infinite_loop import InfiniteLoopDetector
from connectors.triggers.detectors.memory_leak import MemoryLeakDetector
from connectors.triggers.detectors.performance_degradation import PerformanceDegradationDetector
from connectors.triggers.episodes import EpisodeTracker
from connectors.triggers.telemetry import TriggerMetrics
from pipeline.component import Connector, Factory, Kind, Settings, Signal
from pipeline.errors import PermanentError, Refused
from pipeline.host import Host
from pipeline.pdata.batch import Batch
from pipeline.pdata.events import Events
from pipeline.pdata.metrics import Metrics
from pipeline.pdata.traces import Traces

DETECTORS: dict[str, type[Detector]] = {
    "performance_degradation": PerformanceDegradationDetector,
    "error_rate_spike": ErrorRateSpikeDetector,
    "memory_leak": MemoryLeakDetector,
    "infinite_loop": InfiniteLoopDetector,
    "dependency_failure": DependencyFailureDetector,
    "context_overflow": ContextOverflowDetector,
    "deadlock": DeadlockDetector,
    "cost_budget": CostBudgetDetector,
    "health_snapshot": HealthSnapshotDetector,
}
T = TypeVar("T", Traces, Metrics)


class TriggersConnector(Connector[Batch]):
    def __init__(self, settings: Settings, config: TriggersConfig) -> None:
        super().__init__(settings)
        self.config = config
        self.detectors: list[Detector] = [
            cls(getattr(config, name)) for name, cls in DETECTORS.items() if getattr(config, name).enabled]
        peers = {detector.kind: detector for detector in self.detectors}
        for detector in self.detectors:
            detector.attach(peers)
        self.attribute_keys = tuple(dict.fromkeys(k for d in self.detectors for k in d.attribute_keys))
        # The keys the detectors read typed (SpanAttributeReader): the fan-out in front of the
        # connector, and `consume` itself, have each batch's attribute pass capture them, so the
        # detectors' reads cost no walk of their own (pipeline/pdata/spans.py: attribute capture).
        self.span_attribute_keys = frozenset(self.attribute_keys)
        self.tracker = EpisodeTracker(str(self.id), config.resolve_after, config.resolve_ratio)
        self._share_episodes()
        self.telemetry = TriggerMetrics(str(self.id))
        self.pending: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    def take_state_from(self, previous: Connector[Any]) -> None:
        if not isinstance(previous, TriggersConnector):
            return
        old = {type(d): d for d in previous.detectors}
        for detector in self.detectors:
            if type(detector) in old:
                detector.take_state_from(old[type(detector)])
        self.tracker.active = previous.tracker.active
        self._share_episodes()
        self.pending = previous.pending

    def _share_episodes(self) -> None:
        """Let detectors see which episodes are open, so they can skip subjects that are quiet."""
        for detector in self.detectors:
            detector.open_episodes = self.tracker.active

    async def start(self, host: Host) -> None:
        # One-time loads (the price data of context_overflow) happen now, off the event loop,
        # rather than on the first batch.
        await asyncio.get_running_loop().run_in_executor(None, self._prepare_detectors)
        self._task = asyncio.create_task(self._evaluate_loop(), name=f"{self.id}-evaluate")

    def _prepare_detectors(self) -> None:
        for detector in self.detectors:
            try:
                detector.prepare()
            except Exception:
                self.log.exception("detector preparation failed; it loads on first use instead",
                                   extra={"kv": {"detector": detector.kind}})

    async def shutdown(self, deadline: float | None = None) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._evaluate_once()

    async def consume(self, batch: Batch) -> None:
        # CPU time of this thread, not wall time: with a chDB writer thread holding the GIL, wall
        # time would count its work as ours.
        started = time.thread_time()
        if isinstance(batch, Traces):
            if batch.item_count:
                batch.capture(self.span_attribute_keys)
                self.prefetch(batch)
                prefetched = time.thread_time()
                self.telemetry.prefetch_seconds.inc(prefetched - started)
                started = prefetched
                for detector in self.detectors:
                    self._guard(detector, detector.observe, batch)
        elif isinstance(batch, Metrics):
            for detector in self.detectors:
                self._guard(detector, detector.observe_metrics, batch)
        self.telemetry.observe_seconds.inc(time.thread_time() - started)

    def prefetch(self, batch: Traces) -> None:
        """Run the batch's attribute pass now, unless a reader already has: it fills the captured
        keys the detectors read, and the text maps a ClickHouse exporter of the same pipeline then
        reuses (pipeline/pdata/spans.py: attribute capture)."""
        if self.attribute_keys:
            batch.columns.span_attributes  # noqa: B018 - reading the lazy column runs the pass

    def _guard(self, detector: Detector, method: Callable[[T], object], batch: T) -> None:
        try:
            method(batch)
        except Exception:
            self.telemetry.detector_errors.labels(str(self.id), detector.kind).inc()
            self.log.exception("detector failed on a batch; the batch still went on",
                               extra={"kv": {"detector": detector.kind}})

    async def _evaluate_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.evaluation_interval)
            await self._evaluate_once()

    async def _evaluate_once(self) -> None:
        now = time.time()
        emitted: list[dict[str, Any]] = []
        with self.telemetry.evaluation_seconds.time():
            for detector in self.detectors:
                try:
                    observations = detector.evaluate(now)
                except Exception:
                    self.telemetry.detector_errors.labels(str(self.id), detector.kind).inc()
                    self.log.exception("detector evaluation failed", extra={"kv": {"detector": detector.kind}})
                    continue
                emitted.extend(self.tracker.update(detector.kind, observations, now))
                emitted.extend(self._emitted_directly(detector, now))
                self._count_drops(detector)
        self.telemetry.record(emitted, self.tracker.active)
        self.pending.extend(emitted)
        await self._emit()

    def _emitted_directly(self, detector: Detector, now: float) -> list[dict[str, Any]]:
        """Documents a detector sends as they are (health snapshots), not through episodes."""
        try:
            return detector.emit(now, str(self.id))
        except Exception:
            self.telemetry.detector_errors.labels(str(self.id), detector.kind).inc()
            self.log.exception("detector emission failed", extra={"kv": {"detector": detector.kind}})
            return []

    def _count_drops(self, detector: Detector) -> None:
        for reason, count in detector.drops.items():
            self.telemetry.state_evictions.labels(str(self.id), detector.kind, reason).inc(count)
        detector.drops.clear()

    async def _emit(self) -> None:
        if not self.pending:
            return
        overflow = len(self.pending) - self.config.max_pending_events
        if overflow > 0:
            del self.pending[:overflow]
            self.telemetry.dropped_events.inc(overflow)
            self.log.error("events pipeline kept refusing; dropped the oldest trigger events",
                           extra={"kv": {"dropped": overflow}})
        consumer = self.consumers.get(Signal.EVENTS)
        if consumer is None:
            self.pending.clear()
            return
        batch, self.pending = self.pending, []
        try:
            await consumer.consume(Events(batch))
        except Refused:
            self.pending[:0] = batch  # re-offered at the next evaluation
        except PermanentError as exc:
            self.telemetry.dropped_events.inc(len(batch))
            self.log.error("events pipeline refused trigger events permanently",
                           extra={"kv": {"error": str(exc), "events": len(batch)}})


factory = Factory("triggers", Kind.CONNECTOR, TriggersConfig, TriggersConnector,
                  signals=frozenset({Signal.TRACES, Signal.METRICS}), emits=frozenset({Signal.EVENTS}),
                  description="streaming trigger detectors: spans and metrics in, trigger events out")

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
`agentdbg_trigger_state_evictions_total{detector, reason}`.

Event time (connectors/triggers/eventtime.py): the detectors judge each batch at its spans'
end time, in that order, and the windows are evaluated at fixed points of event time once the
watermark (latest end time seen minus `allowed_lateness`, moving on with the clock while the
stream is quiet) has passed them, so the events do not depend on the order batches arrived
in, nor on which instance received which. The price is that an event fires `allowed_lateness`
after the span that caused it ended. A batch later than that is left out of the windows
(counted in `agentdbg_trigger_late_spans_total`; it still goes on to every exporter); a time
ahead of the receive time is capped at it, one over `max_clock_skew` behind is replaced by it
(`agentdbg_trigger_clock_skew_total`). At most `max_buffered_spans` wait for the watermark.

State: windowed state survives a SIGHUP reload (it is handed to the new instance). With
`checkpoint` (connectors/triggers/checkpoint.py) the open episodes, the event clock and each
detector's state per subject (its `state_parts`: error_rate_spike, dependency_failure,
performance_degradation, cost_budget, memory_leak, infinite_loop's CPU runs, the traces deadlock
may still judge) are written every `checkpoint.interval` and at shutdown (to a file_storage
directory or a Kafka compacted changelog topic) and restored at start: an episode open before
a restart keeps its id and resolves after it. A crash (SIGKILL) loses what changed in the last
`interval` plus the batches still waiting for the watermark. infinite_loop's repeated-call
counts, context_overflow and health_snapshot start empty. A failed checkpoint is counted and
retried at the next one; it never holds up spans. `restore_state(accept)` and
`drop_state(accept)` restore or forget only the keys `accept(detector, key)` takes (the
partitions a consumer-group rebalance assigned or took away).
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, TypeVar

from connectors.triggers.checkpoint import (
    CLOCK,
    EPISODES,
    Accept,
    Checkpointer,
    FileStore,
    Records,
    Store,
    encode_records,
)
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
from connectors.triggers.eventtime import EventOrder, Step
from connectors.triggers.live import LiveView
from connectors.triggers.telemetry import TriggerMetrics
from pipeline.component import Connector, Factory, Kind, Settings, Signal
from pipeline.contracts import SubjectFilter
from pipeline.errors import PermanentError, Refused
from pipeline.host import Host
from pipeline.pdata.batch import Batch
from pipeline.pdata.events import Events
from pipeline.pdata.logs import Logs
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


def state_subject(kind: str, key: Any) -> dict[str, Any]:
    """The detector subject a checkpointed state key belongs to (pipeline/partitioning.py places
    it in a partition): an episode's from its key (`kind|subject_key|qualifier`), a detector's
    from the key it keeps its windows under; {} when unknown (then it does not move)."""
    if kind == EPISODES:
        subject_text = str(key).split("|")[1] if str(key).count("|") else ""
        return dict(part.split("=", 1) for part in subject_text.split(",") if "=" in part)
    if kind == "performance_degradation":
        return PerformanceDegradationDetector.subject_of(key)
    if kind == "error_rate_spike":
        return {"service": key}
    if kind == "dependency_failure":
        return {"service": key[0], "dependency": key[1]} if key[0] else {"dependency": key[1]}
    if kind == "cost_budget":
        return {key[0]: key[1]}
    return {}


class TriggersConnector(Connector[Batch]):
    # A consumer-group evaluator sets this False and restores per assigned partition instead.
    restore_on_start = True

    def __init__(self, settings: Settings, config: TriggersConfig) -> None:
        super().__init__(settings)
        self.config = config
        self.detectors: list[Detector] = [
            cls(getattr(config, name)) for name, cls in DETECTORS.items() if getattr(config, name).enabled]
        peers = {detector.kind: detector for detector in self.detectors}
        for detector in self.detectors:
            detector.attach(peers)
        self.live = LiveView(str(self.id), config, self.detectors, self.log, settings.clock)
        self.attribute_keys = tuple(dict.fromkeys(
            (*(k for d in self.detectors for k in d.attribute_keys), *self.live.attribute_keys)))
        # The keys the detectors read typed (SpanAttributeReader): the fan-out in front of the
        # connector, and `consume` itself, have each batch's attribute pass capture them, so the
        # detectors' reads cost no walk of their own (pipeline/pdata/spans.py: attribute capture).
        self.span_attribute_keys = frozenset(self.attribute_keys)
        self.tracker = EpisodeTracker(str(self.id), config.resolve_after, config.resolve_ratio)
        self._share_episodes()
        self.telemetry = TriggerMetrics(str(self.id))
        self.pending: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self.order = EventOrder(config.allowed_lateness, config.max_clock_skew, config.max_buffered_spans,
                                config.evaluation_interval, settings.clock)
        self.checkpointer: Checkpointer | None = None
        self._checkpointed_at = 0.0

    def take_state_from(self, previous: Connector[Any]) -> None:
        if not isinstance(previous, TriggersConnector):
            return
        old = {type(d): d for d in previous.detectors}
        for detector in self.detectors:
            if type(detector) in old:
                detector.take_state_from(old[type(detector)])
        self.tracker.active = previous.tracker.active
        self._share_episodes()
        self.live.take_state_from(previous.live)
        self.pending = previous.pending
        self.order.take_from(previous.order)
        self.checkpointer = previous.checkpointer

    def _share_episodes(self) -> None:
        """Let detectors see which episodes are open, so they can skip subjects that are quiet."""
        for detector in self.detectors:
            detector.open_episodes = self.tracker.active

    async def start(self, host: Host) -> None:
        # One-time loads (the price data of context_overflow) happen now, off the event loop,
        # rather than on the first batch.
        await asyncio.get_running_loop().run_in_executor(None, self._prepare_detectors)
        if self.config.checkpoint is not None:
            await self._open_checkpoint(host)
        if host is not None and self.live.enabled:  # None: a unit test's connector on its own
            host.add_debug_route("inflight", self.live.handle)
        self._task = asyncio.create_task(self._evaluate_loop(), name=f"{self.id}-evaluate")

    async def _open_checkpoint(self, host: Host) -> None:
        """Open the checkpoint store and restore from it (every key: one instance owns them all)."""
        config = self.config.checkpoint
        assert config is not None
        store: Store
        if config.storage is not None:
            owner = f"{self.id}-checkpoint"
            store = FileStore(host.storage(config.storage, f"connector {self.id}: checkpoint.storage")
                              .open_store(owner).directory)
        else:
            from connectors.triggers.checkpoint_kafka import KafkaStore  # aiokafka only when used
            assert config.kafka is not None
            store = KafkaStore(config.kafka, f"agentdbg-{self.id}")
        await store.open()
        self.checkpointer = Checkpointer(str(self.id), store, config.max_bytes)
        self._checkpointed_at = self.order.clock.monotonic()
        if self.restore_on_start:
            await self.restore_state()

    async def restore_state(self, accept: Accept | None = None) -> None:
        """Merge the checkpointed state of the keys `accept(detector, key)` takes (all without it)."""
        assert self.checkpointer is not None, "restore_state without a checkpoint"
        groups = await self.checkpointer.load(accept)
        self.order.restore(groups.pop(CLOCK, {}).get("", {}), self.order.clock.time())
        self.tracker.restore(groups.pop(EPISODES, {}))
        for detector in self.detectors:
            if detector.kind in groups:
                detector.restore(groups[detector.kind])
        self.log.info("trigger state restored from the checkpoint",
                      extra={"kv": {"episodes": len(self.tracker.active),
                                    "keys": sum(len(g) for g in groups.values())}})

    def drop_state(self, accept: Accept) -> None:
        """Forget the state of the keys `accept(detector, key)` takes (handed to another instance)."""
        self.tracker.drop([key for key in self.tracker.active if accept(EPISODES, key)])
        for detector in self.detectors:
            detector.drop([key for key in detector.snapshot() if accept(detector.kind, key)])
        if self.checkpointer is not None:
            kept = self.records()
            self.checkpointer.forget([record for record in self.checkpointer.last if record not in kept])

    # -- pipeline.contracts.PartitionedState: an evaluator in a consumer group ------------------
    def partitioned(self) -> None:
        """Fed by a keyed Kafka receiver: restore per assigned partition, not everything at start."""
        self.restore_on_start = False

    async def partitions_assigned(self, owns: SubjectFilter) -> None:
        if self.checkpointer is not None:
            await self.restore_state(lambda kind, key: owns(state_subject(kind, key)))

    async def partitions_revoked(self, owns: SubjectFilter) -> None:
        """Checkpoint now (what the next owner restores), then let go of the moved subjects."""
        await self._checkpoint(force=True)
        self.drop_state(lambda kind, key: owns(state_subject(kind, key)))

    def state(self) -> dict[str, dict[Any, Any]]:
        """The whole checkpointable state as JSON values, by detector (and `episodes`, `clock`):
        taken on the event loop between evaluations, so it is consistent; made of copies, so it
        can be encoded off the loop (`encode_records`) while the detectors go on."""
        out: dict[str, dict[Any, Any]] = {CLOCK: {"": self.order.snapshot(self.order.clock.time())},
                                          EPISODES: self.tracker.snapshot()}
        for detector in self.detectors:
            out[detector.kind] = detector.snapshot()
        return out

    def records(self) -> Records:
        """The whole checkpointable state, one encoded record per key."""
        return encode_records(self.state())

    async def _checkpoint(self, force: bool = False) -> None:
        config, checkpointer = self.config.checkpoint, self.checkpointer
        if config is None or checkpointer is None:
            return
        now = self.order.clock.monotonic()
        if not force and now - self._checkpointed_at < config.interval:
            return
        self._checkpointed_at = now
        # Encoding is most of a checkpoint's CPU: in a thread, so the loop (and the spans) go on.
        await checkpointer.save(await asyncio.to_thread(encode_records, self.state()))

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
        await self._evaluate_once(flush=True)
        await self._checkpoint(force=True)
        if self.checkpointer is not None:
            await self.checkpointer.store.close()

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
                self.live.observe(batch)  # on arrival: what is open now does not wait for event time
                self.order.offer(batch)  # observed once the watermark passes its event time
        elif isinstance(batch, Metrics) and batch.item_count:
            self.order.offer(batch)
        elif isinstance(batch, Logs):
            self.live.observe(batch)  # partial-span heartbeats; every other record is ignored
        self.telemetry.observe_seconds.inc(time.thread_time() - started)

    def _observe(self, batch: Traces | Metrics) -> None:
        """Fold one batch (at its event time) into every detector's partials."""
        started = time.thread_time()
        if isinstance(batch, Traces):
            for detector in self.detectors:
                self._guard(detector, detector.observe, batch)
        else:
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
            await self.order.clock.sleep(self.config.evaluation_interval)
            await self._evaluate_once()
            await self._checkpoint()

    async def _evaluate_once(self, flush: bool = False) -> None:
        self.pending.extend(self.evaluate_due(flush))
        self.pending.extend(self.evaluate_live())
        await self._emit()

    def evaluate_due(self, flush: bool = False) -> list[dict[str, Any]]:
        """Observe the batches and run the evaluations the watermark has passed (`flush`: all that
        is held); the documents they emitted."""
        emitted: list[dict[str, Any]] = []
        for step in self.order.due(flush):
            self._step(step, emitted)
        self.telemetry.count_order(self.order.counts)
        self.telemetry.record(emitted, {**self.tracker.active, **self.live.active})
        return emitted

    def evaluate_live(self) -> list[dict[str, Any]]:
        """Judge what is running now, on the connector's clock (connectors/triggers/live.py)."""
        emitted = self.live.evaluate(self.settings.clock.time())
        self.telemetry.record(emitted, {**self.tracker.active, **self.live.active})
        return emitted

    def _step(self, step: Step, emitted: list[dict[str, Any]]) -> None:
        if step.batch is not None:
            self._observe(step.batch)
        else:
            emitted.extend(self.evaluate_at(step.at))

    def evaluate_at(self, now: float) -> list[dict[str, Any]]:
        """Evaluate every detector's windows at event time `now`; the documents to emit."""
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
        return emitted

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
                  signals=frozenset({Signal.TRACES, Signal.METRICS, Signal.LOGS}), emits=frozenset({Signal.EVENTS}),
                  description="streaming trigger detectors: spans and metrics in, trigger events out")

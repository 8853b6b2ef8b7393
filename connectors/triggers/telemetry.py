"""Prometheus metrics of the triggers connector: fired/resolved counters, active episodes,
time spent observing (hot path), building shared batch columns, and evaluating (off it)."""
from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from pipeline.telemetry.metrics import REGISTRY

events_total = Counter("agentdbg_trigger_events", "Trigger events emitted, by kind and status.",
                       ["connector", "kind", "status"], registry=REGISTRY)
active_episodes = Gauge("agentdbg_trigger_active_episodes", "Trigger episodes currently firing, by kind.",
                        ["connector", "kind"], registry=REGISTRY)
observe_seconds = Counter("agentdbg_trigger_observe_seconds",
                          "CPU time (of the event-loop thread) spent folding span and metric batches into detector "
                          "state: the hot path (the batch's shared columns are counted apart, in "
                          "agentdbg_trigger_prefetch_seconds).",
                          ["connector"], registry=REGISTRY)
prefetch_seconds = Counter("agentdbg_trigger_prefetch_seconds",
                           "CPU time (of the event-loop thread) spent building a traces batch's shared columns "
                           "and attribute pass when this connector was the first reader; a ClickHouse exporter "
                           "of the same pipeline then reuses them instead of building them itself.",
                           ["connector"], registry=REGISTRY)
evaluation_seconds = Histogram("agentdbg_trigger_evaluation_seconds",
                               "Duration of one evaluation of every detector's windows.", ["connector"],
                               buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
                               registry=REGISTRY)
detector_errors = Counter("agentdbg_trigger_detector_errors", "Detector failures (logged), by kind.",
                          ["connector", "kind"], registry=REGISTRY)
state_evictions = Counter("agentdbg_trigger_state_evictions",
                          "Items a detector let go of because its state is bounded, by detector and reason: "
                          "subject_untracked (a new subject past max_subjects), baseline_evicted, subject_evicted, "
                          "series_untracked, instance_untracked, trace_evicted, span_limit, call_untracked, "
                          "window_shortened, forgotten (see each detector's limits in the README).",
                          ["connector", "detector", "reason"], registry=REGISTRY)
dropped_events = Counter("agentdbg_trigger_dropped_events",
                         "Trigger events dropped because the events pipeline kept refusing them.",
                         ["connector"], registry=REGISTRY)
inflight_records = Counter("agentdbg_trigger_inflight_records",
                           "Records about spans still open read by the in-flight table, by event: heartbeat and "
                           "stop (partial-span log records), pending (logfire pending spans), unreadable (a "
                           "heartbeat body or pending parent id that could not be read: skipped).",
                           ["connector", "event"], registry=REGISTRY)
inflight_spans = Gauge("agentdbg_trigger_inflight_spans",
                       "Spans the in-flight table holds now (open, or stopped and not yet arrived).",
                       ["connector"], registry=REGISTRY)

late_spans = Counter("agentdbg_trigger_late_spans",
                     "Spans (and metric points) that came after the watermark had passed their event time by "
                     "more than allowed_lateness: left out of the detectors' windows (they still went on "
                     "through the pipeline).", ["connector"], registry=REGISTRY)
clock_skew = Counter("agentdbg_trigger_clock_skew",
                     "Batches whose event time was ahead of their receive time (capped at it) or more than "
                     "max_clock_skew behind it (judged at the receive time instead).", ["connector"],
                     registry=REGISTRY)
forced = Counter("agentdbg_trigger_forced_releases",
                 "Batches judged before the watermark reached them because max_buffered_spans were waiting.",
                 ["connector"], registry=REGISTRY)


class TriggerMetrics:
    def __init__(self, connector: str) -> None:
        self.connector = connector
        self.observe_seconds = observe_seconds.labels(connector)
        self.prefetch_seconds = prefetch_seconds.labels(connector)
        self.evaluation_seconds = evaluation_seconds.labels(connector)
        self.detector_errors = detector_errors
        self.state_evictions = state_evictions
        self.dropped_events = dropped_events.labels(connector)
        self._kinds: set[str] = set()

    def count_order(self, counts: dict[str, int]) -> None:
        """Add the event clock's counts since the last call (and zero them)."""
        for name, counter in (("late_spans", late_spans), ("clock_skew", clock_skew), ("forced", forced)):
            if counts[name]:
                counter.labels(self.connector).inc(counts[name])
                counts[name] = 0

    def record(self, emitted: list[dict[str, Any]], active: dict[str, Any]) -> None:
        for doc in emitted:
            events_total.labels(self.connector, doc["kind"], doc["status"]).inc()
        counts: dict[str, int] = {}
        for episode in active.values():
            counts[episode.last.kind] = counts.get(episode.last.kind, 0) + 1
        for kind in self._kinds | set(counts):
            active_episodes.labels(self.connector, kind).set(counts.get(kind, 0))
        self._kinds |= set(counts)

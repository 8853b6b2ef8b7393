"""infinite_loop, second half: a process pegging the CPU (a busy loop), from OTLP metrics.

CPU: a process's CPU above `cpu_threshold` (0.9) without a break for at least
`cpu_sustain` (30 s) of its own readings, from OTLP metrics:
`cpu_utilization_metrics` (`process.cpu.utilization`, `system.cpu.utilization`,
`process.runtime.*.cpu.utilization`; ratios 0..1 — per reading, the non-idle points are
summed per core and the cores averaged) and `cpu_time_metrics` (`process.cpu.time`,
`process.runtime.*.cpu_time`, `container.cpu.time`; seconds, cumulative or delta — the
rate of CPU seconds per second, divided by `cpu_time_cores` (1: the share of one core,
which is what a single spinning thread saturates)). Subject: `service` (worst
instance); `observed` is the mean CPU over the sustained run, unit `ratio`.
`cpu_overrides` set the threshold per subject. A process silent for `cpu_stale_after`
is forgotten; at most `max_subjects` (5,000) processes × metrics are followed at once (a
new one past that is not: `reason="subject_untracked"`).

Note: the current semantic conventions divide `process.cpu.utilization` by the number of
CPUs, so one spinning thread on an 8-core host reads 0.125; send `process.cpu.time` (judged
per core by default) or lower the threshold for such hosts.
"""
from __future__ import annotations

from typing import Any

from connectors.triggers.checkpoint_state import DictPart, Part, from_slots, slot_values
from connectors.triggers.detectors.base import Detector
from connectors.triggers.detectors.infinite_loop.config import InfiniteLoopConfig
from connectors.triggers.detectors.otlp_metrics import (
    DELTA,
    NameMatcher,
    Origin,
    data_points,
    matching_metrics,
    origin_key,
    point_attributes,
    point_value,
)
from connectors.triggers.event import Observation
from pipeline.pdata.metrics import Metrics

CPU_POINT_KEYS = frozenset({"state", "cpu.mode", "system.cpu.state", "process.cpu.state", "type",
                            "cpu", "cpu.logical_number", "system.cpu.logical_number"})
STATE_KEYS = ("state", "cpu.mode", "system.cpu.state", "process.cpu.state", "type")
CORE_KEYS = ("cpu", "cpu.logical_number", "system.cpu.logical_number")
NOT_BUSY = frozenset({"idle", "wait", "iowait"})


class CpuRun:
    """One process's CPU readings: the current run of readings above the threshold."""

    __slots__ = ("last_t", "last_v", "seen_at", "run_start", "run_sum", "run_n", "prev")

    def __init__(self) -> None:
        self.last_t, self.last_v, self.seen_at = 0.0, 0.0, 0.0
        self.run_start: float | None = None
        self.run_sum, self.run_n = 0.0, 0
        self.prev: tuple[float, float] | None = None  # (t, cumulative seconds) for cpu time

    def add(self, t: float, value: float, threshold: float, seen_at: float) -> None:
        if t <= self.last_t:
            return
        self.last_t, self.last_v, self.seen_at = t, value, seen_at
        if value <= threshold:
            self.run_start = None
            return
        if self.run_start is None:
            self.run_start, self.run_sum, self.run_n = t, 0.0, 0
        self.run_sum += value
        self.run_n += 1

    def sustained(self, sustain: float) -> bool:
        return self.run_start is not None and self.last_t - self.run_start >= sustain



class SustainedCpu(Detector[InfiniteLoopConfig]):
    kind = "infinite_loop"
    config_derived = ("cpu_matcher", "utilization_matcher")

    def __init__(self, config: InfiniteLoopConfig) -> None:
        super().__init__(config)
        self.utilization_matcher = NameMatcher(config.cpu_utilization_metrics)
        self.cpu_matcher = NameMatcher([*config.cpu_utilization_metrics, *config.cpu_time_metrics])
        self.cpu: dict[tuple[Origin, str], CpuRun] = {}

    def state_parts(self) -> dict[str, Part]:
        return {"cpu": DictPart(self.cpu, slot_values, lambda values: from_slots(CpuRun, values), origin_key)}

    def observe_metrics(self, batch: Metrics) -> None:
        for origin, metric in matching_metrics(batch.message, self.cpu_matcher):
            run = self.cpu.get((origin, metric.name))
            if run is None:
                if not self.admit(self.cpu, (origin, metric.name)):
                    continue
                self.cpu[(origin, metric.name)] = run = CpuRun()
            threshold = self._cpu_threshold(origin.service)
            if self.utilization_matcher(metric.name):
                readings = self._utilization(metric)
            else:
                readings = self._time_rates(metric, run)
            for t_ns in sorted(readings):
                run.add(t_ns / 1e9, readings[t_ns], threshold, batch.received_at)

    @staticmethod
    def _busy_points(metric: Any) -> dict[int, dict[str, float]]:
        """Per timestamp, per core: the sum of the non-idle points."""
        out: dict[int, dict[str, float]] = {}
        for point in data_points(metric):
            attrs = point_attributes(point, CPU_POINT_KEYS) if point.attributes else {}
            if any(attrs.get(k) in NOT_BUSY for k in STATE_KEYS):
                continue
            core = next((attrs[k] for k in CORE_KEYS if k in attrs), "")
            cores = out.setdefault(point.time_unix_nano, {})
            cores[core] = cores.get(core, 0.0) + point_value(point)
        return out

    def _utilization(self, metric: Any) -> dict[int, float]:
        return {t: sum(cores.values()) / len(cores) for t, cores in self._busy_points(metric).items()}

    def _time_rates(self, metric: Any, run: CpuRun) -> dict[int, float]:
        """CPU seconds per second (over `cpu_time_cores`) from a cumulative or delta time sum."""
        delta = metric.WhichOneof("data") == "sum" and metric.sum.aggregation_temporality == DELTA
        starts = {p.time_unix_nano: p.start_time_unix_nano for p in data_points(metric)}
        rates: dict[int, float] = {}
        for t_ns, cores in sorted(self._busy_points(metric).items()):
            seconds, t = sum(cores.values()), t_ns / 1e9
            if delta:
                elapsed = t - starts[t_ns] / 1e9
                if elapsed > 0:
                    rates[t_ns] = seconds / elapsed / self.config.cpu_time_cores
                continue
            if run.prev is not None and t > run.prev[0] and seconds >= run.prev[1]:
                rates[t_ns] = (seconds - run.prev[1]) / (t - run.prev[0]) / self.config.cpu_time_cores
            if run.prev is None or t > run.prev[0]:
                run.prev = (t, seconds)
        return rates

    def _cpu_threshold(self, service: str) -> float:
        for override in self.config.cpu_overrides:
            if all(k == "service" and str(v).lower() == service.lower() for k, v in override.match.items()):
                return override.threshold
        return self.config.cpu_threshold
    def evaluate(self, now: float) -> list[Observation]:
        per_service: dict[str, tuple[bool, float, CpuRun, str]] = {}
        for key, run in list(self.cpu.items()):
            if now - run.seen_at > self.config.cpu_stale_after:
                del self.cpu[key]
                continue
            if run.last_t == 0.0:
                continue
            sustained = run.sustained(self.config.cpu_sustain)
            value = run.run_sum / run.run_n if sustained else run.last_v
            best = per_service.get(key[0].service)
            if best is None or (sustained, value) > (best[0], best[1]):
                per_service[key[0].service] = (sustained, value, run, key[1])
        return [self._cpu_observation(service, *found) for service, found in per_service.items()]

    def _cpu_observation(self, service: str, sustained: bool, value: float, run: CpuRun,
                         metric: str) -> Observation:
        threshold = self._cpu_threshold(service)
        start = run.run_start if sustained and run.run_start is not None else run.last_t
        held = run.last_t - start
        return Observation(
            self.kind, {"service": service}, round(value, 4), threshold, "ratio", (start, run.last_t),
            self.config.severity,
            f"{service}: CPU ({metric}) at {value:.0%} for {held:.0f}s, over {threshold:.0%} for at least "
            f"{self.config.cpu_sustain:g}s: a busy loop?", firing=sustained)

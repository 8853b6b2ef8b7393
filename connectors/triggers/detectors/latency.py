"""performance_degradation: response time above `factor` (2) × the subject's learned baseline.

Subjects: service + span name for server and agent spans, agent + tool for tool calls.
Response time is the geometric mean of durations (mean of logs), which one slow outlier
cannot drag far. The baseline is an exponentially weighted mean of the same, learned from
the stream with a `baseline_half_life`, and frozen while the subject is degraded so a
lasting slow-down never becomes the new normal. It needs `min_baseline` spans before it
judges, and `min_samples` in the current window.
"""
from __future__ import annotations

import math
from typing import Any

from pydantic import PositiveInt

from connectors.triggers.detectors.base import Detector, DetectorConfig
from connectors.triggers.event import Examples, Observation
from connectors.triggers.windows import SlidingSums
from pipeline.config.units import Duration

SERVER, CONSUMER = 2, 5
JUDGED_OPERATIONS = {"invoke_agent", "execute_tool", "chat", "text_completion", "generate_content"}


class LatencyConfig(DetectorConfig):
    factor: float = 2.0
    window: Duration = 60.0
    baseline_half_life: Duration = 1800.0
    min_samples: PositiveInt = 10
    min_baseline: PositiveInt = 50


class Baseline:
    __slots__ = ("log_sum", "weight", "samples", "updated")

    def __init__(self, now: float) -> None:
        self.log_sum, self.weight, self.samples, self.updated = 0.0, 0.0, 0, now

    def fold(self, log_sum: float, count: int, now: float, half_life: float) -> None:
        decay = 0.5 ** ((now - self.updated) / half_life)
        self.log_sum = self.log_sum * decay + log_sum
        self.weight = self.weight * decay + count
        self.samples += count
        self.updated = now

    @property
    def seconds(self) -> float:
        return math.exp(self.log_sum / self.weight) if self.weight else 0.0


class LatencyDetector(Detector):
    kind = "performance_degradation"
    attribute_keys = ("gen_ai.operation.name", "gen_ai.agent.name", "gen_ai.tool.name")

    def __init__(self, config: LatencyConfig) -> None:
        super().__init__(config)
        self.window = SlidingSums(config.window, bucket=1.0, width=2)
        self.pending: dict[tuple, list[float]] = {}
        self.baselines: dict[tuple, Baseline] = {}
        self.degraded: set[tuple] = set()
        self.slowest: dict[tuple, Examples] = {}

    @staticmethod
    def _subject_keys(cols: Any) -> list[tuple | None]:
        attrs = cols.attributes(LatencyDetector.attribute_keys)
        ops, agents, tools = attrs["gen_ai.operation.name"], attrs["gen_ai.agent.name"], attrs["gen_ai.tool.name"]
        keys: list[tuple | None] = []
        for i, kind in enumerate(cols.kind):
            op = ops[i]
            if op == "execute_tool" and tools[i]:
                keys.append(("tool", agents[i] or cols.service[i], tools[i]))
            elif kind == SERVER or kind == CONSUMER or op in JUDGED_OPERATIONS:
                keys.append(("span", cols.service[i], cols.name[i]))
            else:
                keys.append(None)
        return keys

    def observe(self, batch) -> None:
        cols = batch.columns
        partial: dict[tuple, list[float]] = {}
        log = math.log
        for i, (key, duration) in enumerate(zip(self._subject_keys(cols), cols.duration_ns)):
            if key is None or duration <= 0:
                continue
            slot = partial.get(key)
            if slot is None:
                partial[key] = slot = [0, 0.0, 0, -1]
            slot[0] += 1
            slot[1] += log(duration / 1e9)
            if duration > slot[2]:
                slot[2], slot[3] = duration, i
        for key, (count, log_sum, _, slowest) in partial.items():
            self.window.add(batch.received_at, key, (count, log_sum))
            pending = self.pending.setdefault(key, [0, 0.0])
            pending[0] += count
            pending[1] += log_sum
            self.slowest.setdefault(key, Examples()).add(cols.trace_id[slowest], cols.span_id[slowest])

    def evaluate(self, now: float) -> list[Observation]:
        self.window.expire(now)
        window = self.window.span(now)
        out = []
        for key, (count, log_sum) in self.window.totals.items():
            baseline = self.baselines.get(key)
            if baseline and baseline.samples >= self.config.min_baseline and count >= self.config.min_samples:
                out.append(self._observation(key, count, log_sum, baseline, window))
        self._learn(now)
        return out

    def _observation(self, key: tuple, count: float, log_sum: float, baseline: Baseline,
                     window: tuple[float, float]) -> Observation:
        current = math.exp(log_sum / count)
        subject = self._subject(key)
        factor = self.threshold_for(subject, self.config.factor)
        limit = factor * baseline.seconds
        if current > limit:
            self.degraded.add(key)
        elif current <= limit * 0.8:
            self.degraded.discard(key)
        what = f"{key[1]} / {key[2]}"
        return Observation(
            self.kind, subject, round(current, 6), round(limit, 6), "seconds", window, self.config.severity,
            f"{what}: typical response {current:.3f}s is over {factor:g}x its baseline of {baseline.seconds:.3f}s",
            self.slowest.get(key, Examples()))

    def _learn(self, now: float) -> None:
        for key, (count, log_sum) in self.pending.items():
            if key in self.degraded:
                continue  # frozen: a lasting slow-down must not become the baseline
            baseline = self.baselines.get(key)
            if baseline is None:
                self.baselines[key] = baseline = Baseline(now)
            baseline.fold(log_sum, int(count), now, self.config.baseline_half_life)
        self.pending.clear()

    @staticmethod
    def _subject(key: tuple) -> dict[str, Any]:
        if key[0] == "tool":
            return {"agent": key[1], "tool": key[2]}
        return {"service": key[1], "span_name": key[2]}

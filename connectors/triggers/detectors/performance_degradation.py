"""performance_degradation: response time above `factor` (2) × the subject's learned baseline.

Subjects: service + span name for server and agent spans, agent + tool for tool calls.
Response time is the geometric mean of durations (mean of logs), which one slow outlier
cannot drag far. The baseline is an exponentially weighted mean of the same, learned from
the stream with a `baseline_half_life`, and frozen while the subject is degraded so a
lasting slow-down never becomes the new normal. It needs `min_baseline` spans before it
judges, and `min_samples` in the current window.

Bounded work, per service: this detector reads every span of a service in a batch up to
`sample_above` (256) of them. Beyond that the service's spans are read as a deterministic
stride sample of about `sample_above` (every k-th span, k = ceil(its spans / sample_above),
running on across its resources from an offset that rotates batch by batch), so the cost per
batch stays flat however large batches get, while a quiet service beside a busy one is read
in full. Means come from the spans read, and the counts that `min_samples` and
`min_baseline` check are the spans read too, so a sample never judges on fewer spans than a
full read would: a subject that has few spans within a busy service needs about k times as
many to be judged. The rare-event detectors (errors, timeouts, loops, deadlocks, overflow,
cost) never sample. Per batch, the grouping (counts, log sums, slowest span per subject) is
done by numpy, not per span.

Bounded state: at most `max_subjects` (5,000) subjects in the window; a new subject past
that is not judged until one leaves the window (counted as
`agentdbg_trigger_state_evictions_total{reason="subject_untracked"}`). Baselines outlive the
window (a subject quiet for a while keeps what it learned), up to `max_subjects` of them; past
that the least recently updated are forgotten (`reason="baseline_evicted"`). The slowest-span
examples are kept only for subjects in the window. So a stream of span names that are never
repeated (ids in the name) costs a bounded amount of memory.
"""
from __future__ import annotations

import heapq
import math
from itertools import repeat
from operator import or_
from typing import Any

import numpy as np
from pydantic import PositiveInt

from connectors.triggers.checkpoint_state import DictPart, Part, SetPart, examples_part
from connectors.triggers.columnar import stride_for, take, where, where_equal
from connectors.triggers.detectors.base import BoundedConfig, Detector
from connectors.triggers.event import Examples, Observation, subject_key
from connectors.triggers.windows import SlidingSums
from pipeline.config.units import Duration
from pipeline.pdata.spans import SpanColumns
from pipeline.pdata.traces import Traces

SERVER, CONSUMER = 2, 5
JUDGED_KINDS = frozenset({SERVER, CONSUMER})
NO_EXAMPLES = Examples()  # shared, read-only: a subject with no example yet
JUDGED_OPERATIONS = frozenset({"invoke_agent", "execute_tool", "chat", "text_completion", "generate_content"})
OPERATION = "gen_ai.operation.name"


def judged_operations(ops: list[Any]) -> Any:
    """Per value, whether it names a judged GenAI operation (a set lookup in C; values that
    cannot be hashed, such as array attributes, are judged one by one)."""
    try:
        return list(map(JUDGED_OPERATIONS.__contains__, ops))
    except TypeError:
        return [op.__class__ is str and op in JUDGED_OPERATIONS for op in ops]


class PerformanceDegradationConfig(BoundedConfig):
    factor: float = 2.0
    window: Duration = 60.0
    baseline_half_life: Duration = 1800.0
    min_samples: PositiveInt = 10
    min_baseline: PositiveInt = 50
    sample_above: PositiveInt = 256


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

    def dump(self) -> list[float]:
        return [self.log_sum, self.weight, self.samples, self.updated]

    @classmethod
    def load(cls, value: list[float]) -> Baseline:
        baseline = cls(value[3])
        baseline.log_sum, baseline.weight, baseline.samples = value[0], value[1], int(value[2])
        return baseline

    @property
    def seconds(self) -> float:
        return math.exp(self.log_sum / self.weight) if self.weight else 0.0


class PerformanceDegradationDetector(Detector[PerformanceDegradationConfig]):
    kind = "performance_degradation"
    attribute_keys = ("gen_ai.operation.name", "gen_ai.agent.name", "gen_ai.tool.name")

    def __init__(self, config: PerformanceDegradationConfig) -> None:
        super().__init__(config)
        self.window: SlidingSums[tuple[Any, ...]] = SlidingSums(config.window, bucket=1.0, width=2)
        self.pending: dict[tuple, list[float]] = {}
        self.baselines: dict[tuple, Baseline] = {}
        self.degraded: set[tuple] = set()
        self.slowest: dict[tuple, Examples] = {}
        self._batches = 0  # batches seen: rotates the stride sample's first span
        self._subject_dicts: dict[tuple, tuple[dict[str, Any], str]] = {}

    def state_parts(self) -> dict[str, Part]:
        return {"window": self.window, "baselines": DictPart(self.baselines, Baseline.dump, Baseline.load),
                "degraded": SetPart(self.degraded), "slowest": examples_part(self.slowest)}

    def observe(self, batch: Traces) -> None:
        cols = batch.columns
        rows = self._sample(cols)
        self._batches += 1
        keys, rows = self._subjects(cols, rows)
        if rows:
            self._fold(batch, cols, keys, rows)

    def _sample(self, cols: SpanColumns) -> Any:
        """The span indices to read: all of them, or per service a stride sample of about
        `sample_above` (a resource's spans are contiguous, so this is slicing, per resource)."""
        limit = self.config.sample_above
        if len(cols) <= limit:
            return range(len(cols))
        starts, services = cols.resource_starts, cols.resource_services
        spans: dict[str, int] = {}
        for service, lo, hi in zip(services, starts, starts[1:]):
            spans[service] = spans.get(service, 0) + hi - lo
        if max(spans.values()) <= limit:
            return range(len(cols))
        steps = {service: stride_for(count, limit) for service, count in spans.items()}
        phase = dict.fromkeys(steps, self._batches)  # the stride runs on across a service's resources
        rows: list[int] = []
        for service, lo, hi in zip(services, starts, starts[1:]):
            step = steps[service]
            rows.extend(range(lo + -phase[service] % step, hi, step))
            phase[service] += hi - lo
        return rows

    def _subjects(self, cols: SpanColumns, rows: Any) -> tuple[list[tuple], list[int]]:
        """The judged spans among `rows` (indices into the batch) and their subject keys:
        agent + tool for `execute_tool` spans with a tool name; service + span name for SERVER
        and CONSUMER spans and GenAI operations in JUDGED_OPERATIONS."""
        every = isinstance(rows, range)
        judged = list(map(JUDGED_KINDS.__contains__, cols.kind if every else take(cols.kind, rows)))
        tool_rows: list[int] = []
        if cols.present(OPERATION):
            ops = cols.values_at(OPERATION, rows)
            judged = list(map(or_, judged, judged_operations(ops)))
            tool_rows = self._tool_rows(cols, rows, ops)
            for j in tool_rows:
                judged[j] = False
        span_rows = where(judged, len(judged))
        picked = list(take(rows, span_rows))
        keys: list[tuple] = list(zip(repeat("span"), take(cols.service, picked), take(cols.name, picked)))
        if tool_rows:
            tool_indices = take(rows, tool_rows)
            picked += tool_indices
            keys += self._tool_keys(cols, tool_indices)
        return keys, picked

    @staticmethod
    def _tool_rows(cols: SpanColumns, rows: Any, ops: list[Any]) -> list[int]:
        """Sample positions of `execute_tool` spans that name their tool."""
        calls = where_equal(ops, "execute_tool")
        if not calls or not cols.present("gen_ai.tool.name"):
            return []
        tools = cols.values_at("gen_ai.tool.name", take(rows, calls))
        return list(take(calls, where(tools, len(tools))))

    @staticmethod
    def _tool_keys(cols: SpanColumns, indices: Any) -> list[tuple]:
        services = take(cols.service, indices)
        agents = services
        if cols.present("gen_ai.agent.name"):
            agents = [a or s for a, s in zip(cols.values_at("gen_ai.agent.name", indices), services)]
        return list(zip(repeat("tool"), agents, cols.values_at("gen_ai.tool.name", indices)))

    def _fold(self, batch: Traces, cols: SpanColumns, keys: list[tuple], rows: list[int]) -> None:
        """Per subject: span count, sum of log seconds and the slowest span, grouped by numpy
        (bincount and one sort) rather than a Python loop per span."""
        # float64, not int64: a span of 2^63 ns or more (times a client got wrong) must not make
        # numpy overflow and cost the detector the whole batch, good spans included.
        durations = np.array(take(cols.duration_ns, rows) if len(rows) > 1 else [cols.duration_ns[rows[0]]],
                             dtype=np.float64)
        if durations.min() <= 0:  # a span without a duration says nothing about response time
            kept = np.flatnonzero(durations > 0)
            if not len(kept):
                return
            keys, rows, durations = [keys[j] for j in kept], [rows[j] for j in kept], durations[kept]
        subjects = list(dict.fromkeys(keys))
        code_of = dict(zip(subjects, range(len(subjects))))
        codes = np.fromiter(map(code_of.__getitem__, keys), dtype=np.intp, count=len(keys))
        counts = np.bincount(codes, minlength=len(subjects))
        log_sums = np.bincount(codes, weights=np.log(durations / 1e9), minlength=len(subjects))
        # The slowest span of each subject (the first of equals, as a span-by-span scan keeps):
        # sort by subject, then duration, then position reversed; the last of each run wins.
        order = np.lexsort((-np.arange(len(codes)), durations, codes))
        last = np.append(np.flatnonzero(np.diff(codes[order])), len(order) - 1)
        slowest = dict(zip(codes[order[last]].tolist(), order[last].tolist()))
        now = batch.received_at
        for code, key in enumerate(subjects):
            if not self.admit(self.window.totals, key):
                continue
            count, log_sum = int(counts[code]), float(log_sums[code])
            self.window.add(now, key, (count, log_sum))
            pending = self.pending.setdefault(key, [0, 0.0])
            pending[0] += count
            pending[1] += log_sum
            i = rows[slowest[code]]
            self.slowest.setdefault(key, Examples()).add(cols.trace_id[i], cols.span_id[i])

    def evaluate(self, now: float) -> list[Observation]:
        self.window.expire(now)
        window = self.window.span(now)
        out = []
        for key, (count, log_sum) in self.window.totals.items():
            baseline = self.baselines.get(key)
            # A degraded subject stays judged below min_samples: at low traffic the window
            # thins out between calls, and that is no sign of recovery.
            enough = count >= self.config.min_samples or (key in self.degraded and count > 0)
            if baseline and baseline.samples >= self.config.min_baseline and enough:
                observation = self._observation(key, count, log_sum, baseline, window)
                if observation is not None:
                    out.append(observation)
        self._learn(now)
        self._forget(now)
        return out

    def _forget(self, now: float) -> None:
        """Keep examples for subjects in the window only, and at most max_subjects baselines
        (the least recently updated go first)."""
        totals = self.window.totals
        if len(self.slowest) > len(totals):
            for key in [k for k in self.slowest if k not in totals]:
                del self.slowest[key]
        excess = len(self.baselines) - self.config.max_subjects
        if excess > 0:
            for key in heapq.nsmallest(excess, self.baselines, key=lambda k: self.baselines[k].updated):
                del self.baselines[key]
                self.degraded.discard(key)
            self.evict("baseline_evicted", excess)

    def _observation(self, key: tuple, count: float, log_sum: float, baseline: Baseline,
                     window: tuple[float, float]) -> Observation | None:
        """The subject's observation; None for a subject under its limit with no open episode,
        which the episode tracker would only look at and drop (most subjects, every tick)."""
        current = math.exp(log_sum / count)
        subject, episode = self._subject(key)
        factor = self.threshold_for(subject, self.config.factor) if self.config.overrides else self.config.factor
        usual = baseline.seconds
        limit = factor * usual
        if current > limit:
            self.degraded.add(key)
        elif current <= limit * 0.8:
            self.degraded.discard(key)
        observed, threshold = round(current, 6), round(limit, 6)
        if observed <= threshold and not self.episode_open(episode):
            return None
        return Observation(
            self.kind, subject, observed, threshold, "seconds", window, self.config.severity,
            f"{key[1]} / {key[2]}: typical response {current:.3f}s is over {factor:g}x its baseline of {usual:.3f}s",
            self.slowest.get(key) or NO_EXAMPLES)

    def _learn(self, now: float) -> None:
        for key, (count, log_sum) in self.pending.items():
            if key in self.degraded:
                continue  # frozen: a lasting slow-down must not become the baseline
            baseline = self.baselines.get(key)
            if baseline is None:
                self.baselines[key] = baseline = Baseline(now)
            baseline.fold(log_sum, int(count), now, self.config.baseline_half_life)
        self.pending.clear()

    def _subject(self, key: tuple) -> tuple[dict[str, Any], str]:
        """The subject of a key and the key of its episode (Observation.key), made once per
        subject: evaluation looks at every subject at every tick."""
        found = self._subject_dicts.get(key)
        if found is None:
            if len(self._subject_dicts) > 4 * len(self.window.totals) + 1024:
                self._subject_dicts.clear()  # forget subjects long gone
            subject = self.subject_of(key)
            found = self._subject_dicts[key] = (subject, f"{self.kind}|{subject_key(subject)}")
        return found

    @staticmethod
    def subject_of(key: tuple) -> dict[str, Any]:
        if key[0] == "tool":
            return {"agent": key[1], "tool": key[2]}
        return {"service": key[1], "span_name": key[2]}

"""infinite_loop: an agent repeating the same tool call, or a process pegging the CPU.

What fires, two ways (one kind, told apart by their subjects):
1. Repeated calls: the same tool called with the same arguments at least
   `repeat_threshold` (5) times in one session within `window` (10 min). Tool spans are
   spans with `gen_ai.tool.name` (else `tool.name`); the arguments are the first of
   `gen_ai.tool.call.arguments`, `tool.parameters`, `input.value` (hashed only for tool
   spans; `input.value`, which holds whole prompts on LLM spans, is read from the tool span
   itself rather than fetched for every span); the session is `gen_ai.conversation.id`, else the trace id. A tool span
   without recorded arguments is not counted (`require_arguments`: instrumentations record
   arguments only when asked, and two calls we cannot compare are not a loop).
   At most `max_tracked` (100,000) distinct calls are counted at once. Past that the oldest
   buckets of the window are let go of early (the window shortens while the fleet makes that
   many distinct calls: a loop repeats fast, the oldest calls matter least), counted as
   `agentdbg_trigger_state_evictions_total{reason="window_shortened"}` per call forgotten;
   only when the newest bucket alone is full are new calls not tracked
   (`reason="call_untracked"`).
   Subject: `service`, `agent` (`gen_ai.agent.name`, else the service), `tool`, `session`;
   `observed` is the number of identical calls, unit `count`. Per-subject `overrides` set
   the repeat count.
2. CPU: a process's CPU above `cpu_threshold` (0.9) without a break for at least
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
   new one past that is not: `reason="subject_untracked"`). Note: the current semconv `process.cpu.utilization` is divided by the
   number of CPUs, so one spinning thread on an 8-core host reads 0.125; send
   `process.cpu.time` (judged per core by default) or lower the threshold for such hosts.
"""
from __future__ import annotations

from collections import Counter
from itertools import compress, islice, repeat
from operator import not_
from typing import Any, Sequence

from pydantic import Field, PositiveFloat, PositiveInt

from connectors.triggers.columnar import rows_with_fallback, take, truthy_rows, where
from connectors.triggers.detectors.base import BoundedConfig, Detector, Override
from connectors.triggers.detectors.otlp_metrics import (
    DELTA,
    NameMatcher,
    Origin,
    data_points,
    matching_metrics,
    point_attributes,
    point_value,
)
from connectors.triggers.event import Examples, Observation
from connectors.triggers.windows import SlidingCounts
from pipeline.pdata.anyvalue import any_value_text
from pipeline.config.units import Duration

CPU_POINT_KEYS = frozenset({"state", "cpu.mode", "system.cpu.state", "process.cpu.state", "type",
                            "cpu", "cpu.logical_number", "system.cpu.logical_number"})
STATE_KEYS = ("state", "cpu.mode", "system.cpu.state", "process.cpu.state", "type")
CORE_KEYS = ("cpu", "cpu.logical_number", "system.cpu.logical_number")
NOT_BUSY = frozenset({"idle", "wait", "iowait"})
# service, agent, tool, session (conversation id, or the trace id as bytes)
Call = tuple[Any, Any, Any, Any]


class InfiniteLoopConfig(BoundedConfig):
    repeat_threshold: PositiveInt = 5
    window: Duration = 600.0
    require_arguments: bool = True
    max_tracked: PositiveInt = 100_000
    cpu_threshold: float = Field(0.9, gt=0)
    cpu_sustain: Duration = 30.0
    cpu_stale_after: Duration = 120.0
    cpu_utilization_metrics: list[str] = Field(default_factory=lambda: [
        "process.cpu.utilization", "system.cpu.utilization", "process.runtime.*.cpu.utilization"])
    cpu_time_metrics: list[str] = Field(default_factory=lambda: [
        "process.cpu.time", "process.runtime.*.cpu_time", "container.cpu.time"])
    cpu_time_cores: PositiveFloat = 1.0
    cpu_overrides: list[Override] = Field(default_factory=list)


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


class InfiniteLoopDetector(Detector):
    kind = "infinite_loop"
    attribute_keys = ("gen_ai.tool.name", "tool.name", "gen_ai.conversation.id", "gen_ai.agent.name",
                      "gen_ai.tool.call.arguments", "tool.parameters")
    config_derived = ("cpu_matcher", "utilization_matcher", "min_threshold")

    def __init__(self, config: InfiniteLoopConfig) -> None:
        super().__init__(config)
        self.calls = SlidingCounts(config.window, bucket=max(config.window / 120, 0.05))
        # hash of (call, arguments) → (call, examples), for keys at or past the lowest repeat threshold
        self.hot: dict[int, tuple[Call, Examples]] = {}
        self.dropped = 0
        self.min_threshold = min([config.repeat_threshold, *(o.threshold for o in config.overrides)])
        self.utilization_matcher = NameMatcher(config.cpu_utilization_metrics)
        self.cpu_matcher = NameMatcher([*config.cpu_utilization_metrics, *config.cpu_time_metrics])
        self.cpu: dict[tuple[Origin, str], CpuRun] = {}

    # -- hot path: repeated tool calls ---------------------------------------------------------------
    def observe(self, batch: Any) -> None:
        cols = batch.columns
        tools = self._tool_names(cols)  # {span index: tool name} of the tool spans only
        picked = truthy_rows(tools)
        if not picked:
            return
        picked, args = self._arguments(cols, picked)
        if picked:
            keys, calls = self._call_keys(cols, picked, list(map(tools.__getitem__, picked)), args)
            self._count(batch.received_at, cols, picked, keys, calls)

    def _arguments(self, cols: Any, picked: list[int]) -> tuple[list[int], list[Any]]:
        """The tool spans to count and their arguments: the first of `gen_ai.tool.call.arguments`,
        `tool.parameters`, `input.value` (read from the span itself); without any, the span is
        left out when `require_arguments`, else counted with "" as its arguments."""
        args = cols.values_at("gen_ai.tool.call.arguments", picked)
        if cols.present("tool.parameters"):
            args = [a or p for a, p in zip(args, cols.values_at("tool.parameters", picked))]
        if all(args):
            return picked, args
        lacking = [j for j, a in enumerate(args) if not a]
        spans = cols.spans
        for j in lacking:
            args[j] = self._input_value(spans[picked[j]]) or ""
        if not self.config.require_arguments:
            return picked, args
        keep = where(args, len(args))
        return take(picked, keep), take(args, keep)

    @staticmethod
    def _call_keys(cols: Any, picked: list[int], tools: Any, args: Any) -> tuple[list[int], list[Call]]:
        """Per picked span, the call (service, agent, tool, session) and the int key of the call
        with its arguments: its 64-bit hash (collisions are negligible), cheap to count."""
        services = take(cols.service, picked)
        agents = services
        if cols.present("gen_ai.agent.name"):
            agents = [a or s for a, s in zip(cols.values_at("gen_ai.agent.name", picked), services)]
        sessions = take(cols.trace_id, picked)
        if cols.present("gen_ai.conversation.id"):
            sessions = [c or t for c, t in zip(cols.values_at("gen_ai.conversation.id", picked), sessions)]
        calls = list(zip(services, agents, tools, sessions))
        if set(map(type, args)) != {str}:  # structured arguments (lists, maps): hashed by their repr
            args = [a if a.__class__ is str else repr(a) for a in args]
        return list(map(hash, zip(calls, args))), calls

    def _count(self, now: float, cols: Any, picked: Sequence[int], keys: list[int], calls: list[Call]) -> None:
        totals = self.calls.totals
        tracked = self._tracked(keys, now)
        if tracked is keys:
            self.calls.add_all(now, keys)
        else:
            self.calls.add_all(now, compress(keys, tracked))
        threshold = self.min_threshold
        hot = list(compress(range(len(keys)), map(threshold.__le__, map(totals.get, keys, repeat(0)))))
        if hot:
            self._hot(cols, picked, keys, calls, hot, tracked)

    def _tracked(self, keys: list[int], now: float) -> Any:
        """`keys` when every call fits under `max_tracked`; otherwise a flag per key, false for
        the calls that found no room (new calls beyond the bound, in order of arrival: dropped
        and counted). Far from the bound this costs nothing per call."""
        totals, bound = self.calls.totals, self.config.max_tracked
        if len(totals) + len(keys) <= bound:
            return keys
        self.evict("window_shortened", self.calls.shed_oldest(bound - len(keys), now))
        if len(totals) + len(keys) <= bound:
            return keys
        flags = list(map(totals.__contains__, keys))  # already tracked: always counted
        room = bound - len(totals)
        if room > 0:
            new = list(compress(keys, map(not_, flags)))
            admitted = set(islice(dict.fromkeys(new), room))
            flags = [known or key in admitted for known, key in zip(flags, keys)]
        dropped = flags.count(False)
        if not dropped:
            return keys
        self.dropped += dropped
        self.drops["call_untracked"] = self.drops.get("call_untracked", 0) + dropped
        return flags

    def _hot(self, cols: Any, picked: Sequence[int], keys: list[int], calls: list[Call], hot: list[int],
             tracked: Any) -> None:
        """Examples for the calls at or past the lowest repeat threshold: each occurrence whose
        running count (in arrival order) reached it, as a call-by-call count would give."""
        totals, threshold = self.calls.totals, self.min_threshold
        counted = Counter(compress(keys, tracked)) if tracked is not keys else Counter(keys)
        running: dict[int, int] = {}
        for j in hot:
            key = keys[j]
            if tracked is not keys and not tracked[j]:
                continue
            running[key] = running.get(key, 0) + 1
            if totals[key] - counted[key] + running[key] < threshold:
                continue
            slot = self.hot.get(key)
            if slot is None:
                self.hot[key] = slot = (calls[j], Examples())
            i = picked[j]
            slot[1].add(cols.trace_id[i], cols.span_id[i])

    @staticmethod
    def _tool_names(cols: Any) -> dict[int, Any]:
        return rows_with_fallback(cols, "gen_ai.tool.name", "tool.name")

    @staticmethod
    def _input_value(span: Any) -> str | None:
        """OpenInference's `input.value`, read from the span itself (only for tool spans: on LLM
        spans it holds whole prompts, too big to copy for every span)."""
        for kv in span.attributes:
            if kv.key == "input.value":
                return any_value_text(kv.value)
        return None

    # -- hot path: CPU metrics ---------------------------------------------------------------------
    def observe_metrics(self, batch: Any) -> None:
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

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, now: float) -> list[Observation]:
        return self._repeated_calls(now) + self._cpu(now)

    def _repeated_calls(self, now: float) -> list[Observation]:
        self.calls.expire(now)
        window = self.calls.span(now)
        worst: dict[Call, tuple[int, Examples]] = {}
        for key, (call, examples) in list(self.hot.items()):
            total = self.calls.totals.get(key, 0)
            if total < self.min_threshold:
                del self.hot[key]
                continue
            if call not in worst or total > worst[call][0]:
                worst[call] = (total, examples)
        out = []
        for (service, agent, tool, session), (count, examples) in worst.items():
            session = session.hex() if isinstance(session, bytes) else str(session)
            subject = {"service": service, "agent": str(agent), "tool": str(tool), "session": session}
            threshold = self.threshold_for(subject, self.config.repeat_threshold)
            if count >= threshold:
                out.append(Observation(
                    self.kind, subject, count, threshold, "count", window, self.config.severity,
                    f"{agent} called tool {tool} {count:g} times with the same arguments in session {session} "
                    f"within {self.config.window:g}s (threshold {threshold:g})", examples, firing=True))
        return out

    def _cpu(self, now: float) -> list[Observation]:
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

"""infinite_loop, first half: an agent repeating the same tool call.

Fires when the same tool is called with the same arguments at least `repeat_threshold` (5)
times in one session within `window` (10 min).
- Tool spans are spans with `gen_ai.tool.name` (else `tool.name`). Their arguments are the
  first of `gen_ai.tool.call.arguments`, `tool.parameters`, `input.value` (hashed; the
  OpenInference `input.value` is read from the tool span itself, since on LLM spans it holds
  whole prompts, too big to fetch for every span). The session is `gen_ai.conversation.id`,
  else the trace id.
- A tool span without recorded arguments is not counted (`require_arguments`:
  instrumentations record arguments only when asked, and two calls we cannot compare are
  not a loop).
- At most `max_tracked` (100,000) distinct calls are counted at once. Past that the oldest
  buckets of the window are let go of early (the window shortens while the fleet makes that
  many distinct calls: a loop repeats fast, the oldest calls matter least), counted as
  `agentdbg_trigger_state_evictions_total{reason="window_shortened"}` per call forgotten;
  only when the newest bucket alone is full are new calls not tracked
  (`reason="call_untracked"`).

Subject: `service`, `agent` (`gen_ai.agent.name`, else the service), `tool`, `session`;
`observed` is the number of identical calls, unit `count`. Per-subject `overrides` set the
repeat count.
"""
from __future__ import annotations

from collections import Counter
from itertools import compress, islice, repeat
from operator import not_
from typing import Any, Sequence

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from connectors.triggers.columnar import rows_with_fallback, take, truthy_rows, where
from connectors.triggers.detectors.base import Detector
from connectors.triggers.detectors.infinite_loop.config import InfiniteLoopConfig
from connectors.triggers.event import Examples, Observation
from connectors.triggers.windows import SlidingCounts
from pipeline.pdata.anyvalue import any_value_text
from pipeline.pdata.spans import SpanColumns
from pipeline.pdata.traces import Traces

# service, agent, tool, session (conversation id, or the trace id as bytes)
Call = tuple[Any, Any, Any, Any]


class RepeatedToolCalls(Detector[InfiniteLoopConfig]):
    kind = "infinite_loop"
    attribute_keys = ("gen_ai.tool.name", "tool.name", "gen_ai.conversation.id", "gen_ai.agent.name",
                      "gen_ai.tool.call.arguments", "tool.parameters")
    config_derived = ("min_threshold",)

    def __init__(self, config: InfiniteLoopConfig) -> None:
        super().__init__(config)
        self.calls: SlidingCounts[int] = SlidingCounts(config.window, bucket=max(config.window / 120, 0.05))
        # hash of (call, arguments) → (call, examples), for keys at or past the lowest repeat threshold
        self.hot: dict[int, tuple[Call, Examples]] = {}
        self.dropped = 0
        self.min_threshold = min([config.repeat_threshold, *(o.threshold for o in config.overrides)])

    def observe(self, batch: Traces) -> None:
        cols = batch.columns
        tools = self._tool_names(cols)  # {span index: tool name} of the tool spans only
        picked = truthy_rows(tools)
        if not picked:
            return
        counted, args = self._arguments(cols, picked)
        if counted:
            keys, calls = self._call_keys(cols, counted, list(map(tools.__getitem__, counted)), args)
            self._count(batch.received_at, cols, counted, keys, calls)

    def _arguments(self, cols: SpanColumns, picked: Sequence[int]) -> tuple[Sequence[int], Sequence[Any]]:
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
    def _call_keys(cols: SpanColumns, picked: Sequence[int], tools: Sequence[Any], args: Sequence[Any]
                   ) -> tuple[list[int], list[Call]]:
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

    def _count(self, now: float, cols: SpanColumns, picked: Sequence[int], keys: list[int], calls: list[Call]) -> None:
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

    def _hot(self, cols: SpanColumns, picked: Sequence[int], keys: list[int], calls: list[Call], hot: list[int],
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
    def _tool_names(cols: SpanColumns) -> dict[int, Any]:
        return rows_with_fallback(cols, "gen_ai.tool.name", "tool.name")

    @staticmethod
    def _input_value(span: Span) -> str | None:
        """OpenInference's `input.value`, read from the span itself (only for tool spans: on LLM
        spans it holds whole prompts, too big to copy for every span)."""
        for kv in span.attributes:
            if kv.key == "input.value":
                return any_value_text(kv.value)
        return None

    def evaluate(self, now: float) -> list[Observation]:
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


"""deadlock: an agent span blocked for more than `blocked_limit` (10 s) of its own time.

What fires: an agent span whose own time — its duration minus the union of its direct
children's intervals (clipped to the span) — is over `blocked_limit`: the agent waited on
something no span covers (a lock, a queue, a hung call without instrumentation). Agent
spans: `gen_ai.operation.name` `invoke_agent` or `invoke_workflow`, or SERVER spans with a
`gen_ai.agent.name`. Only an agent span longer than the limit can qualify, so only those
are judged.

When: like tail sampling, once the trace's spans have arrived — `decision_wait` (5 s)
after the last span of the trace arrived. Until then the trace waits in a buffer of at
most `max_traces` (50,000) traces keyed by trace id, ordered by last arrival; past the
bound the oldest is evicted (counted: `agentdbg_trigger_state_evictions_total{reason=
"trace_evicted"}`; one holding a long agent span is still judged with the spans it has).
A trace that goes quiet before its root span has arrived is still running (children are
exported as they end, and one LLM call or tool can outlast the wait): it is kept aside (at
most `max_traces` such traces) and picked up again when more of it arrives, so an agent
span is judged with the children that came before it.

What the buffer keeps: per trace, references to the four column lists each batch already
has (`trace_id`, `parent_span_id`, `start_ns`, `end_ns` of SpanColumns: shared, not
copied, no span objects or messages), plus a tuple (span id, start, end, agent, service)
per long agent span. So the hot path does per-trace work, not per-span work. Off the hot
path, a trace still buffered `compact_after` (10 s) after its first span is compacted: its
spans are copied out of those batches as (parent, start, end) tuples, so a long-running
trace does not keep whole batches alive; short traces are judged and dropped before that.

Bounded state: besides `max_traces` (buffered) and `max_traces` (kept aside), the compacted
spans of all held traces are at most `max_spans` (200,000, about 25 MB); past that the traces
kept aside longest are forgotten first, then the least recently arrived buffered ones
(`agentdbg_trigger_state_evictions_total{reason="span_limit"}`, one per trace). Batches
themselves are referenced only until `compact_after`.

A span that never ends is never exported, so a deadlock that never resolves is seen only
once the agent span ends (for example by a timeout).

Subject: `service`, `agent` (`gen_ai.agent.name`, else the span name). `observed` is the
largest own time in seconds among the subject's spans judged in this evaluation (unit
`seconds`); the episode resolves once no blocked span has come for `resolve_after`.
Per-subject `overrides` set the limit. Severity critical.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from itertools import filterfalse
from typing import Any

from pydantic import PositiveInt

from connectors.triggers.columnar import where
from connectors.triggers.detectors.base import Detector, DetectorConfig, Severity
from connectors.triggers.event import Examples, Observation
from pipeline.config.units import Duration
from pipeline.pdata.spans import SpanColumns
from pipeline.pdata.traces import Traces

SERVER = 2
AGENT_OPERATIONS = ("invoke_agent", "invoke_workflow")
Candidate = tuple[bytes, int, int, str, str]  # span id, start ns, end ns, agent, service
BatchRef = tuple[list[bytes], list[bytes], list[int], list[int]]  # trace id, parent, start, end


class DeadlockConfig(DetectorConfig):
    severity: Severity = "critical"
    blocked_limit: Duration = 10.0
    decision_wait: Duration = 5.0
    max_traces: PositiveInt = 50_000
    max_spans: PositiveInt = 200_000
    compact_after: Duration = 10.0


class TraceEntry:
    __slots__ = ("last_arrival", "batches", "spans", "candidates", "rooted")

    def __init__(self, last_arrival: float = 0.0, batch: BatchRef | None = None) -> None:
        self.last_arrival = last_arrival
        self.batches: list[BatchRef] = [batch] if batch is not None else []  # not yet compacted
        # Empty tuples until needed: most traces are never compacted and hold no long agent span,
        # and every list allocated per trace is one more object for the garbage collector.
        self.spans: list[tuple[bytes, int, int]] | tuple = ()  # compacted: (parent, start, end)
        self.candidates: list[Candidate] | tuple = ()
        self.rooted = False  # its root span (no parent) has arrived: nothing of it is still running

    def compact(self, trace_id: bytes) -> int:
        """Copy this trace's spans out of its batches, so they can be freed; returns how many were added."""
        if not self.batches:
            return 0
        spans = list(self.spans)
        for trace_ids, parents, starts, ends in unique(self.batches):
            for i in indices(trace_ids, trace_id):
                spans.append((parents[i], starts[i], ends[i]))
        added = len(spans) - len(self.spans)
        self.spans = spans
        self.batches = []
        return added

    def add_candidate(self, candidate: Candidate) -> None:
        self.candidates = [*self.candidates, candidate]


class DeadlockDetector(Detector[DeadlockConfig]):
    kind = "deadlock"
    attribute_keys = ("gen_ai.operation.name", "gen_ai.agent.name")
    config_derived = ("floor_ns",)

    def __init__(self, config: DeadlockConfig) -> None:
        super().__init__(config)
        limits = [config.blocked_limit, *(o.threshold for o in config.overrides)]
        self.floor_ns = int(min(limits) * 1e9)
        self.buffer: OrderedDict[bytes, TraceEntry] = OrderedDict()
        self.ready: list[tuple[bytes, TraceEntry]] = []  # evicted with a long agent span: judge anyway
        self.arrivals: deque[tuple[float, list[bytes]]] = deque()  # (first arrival, trace ids), for compaction
        # Quiet traces whose root has not arrived: a long child (an LLM call, a tool) is still
        # running, and an agent span that ends later needs the children that came before it.
        self.waiting: OrderedDict[bytes, TraceEntry] = OrderedDict()
        self.evicted = 0
        self.held = 0  # compacted spans of every trace still held (buffer, waiting, ready)

    # -- hot path --------------------------------------------------------------------------------
    def observe(self, batch: Traces) -> None:
        cols = batch.columns
        if not len(cols):
            return
        ref: BatchRef = (cols.trace_id, cols.parent_span_id, cols.start_ns, cols.end_ns)
        buffer, now = self.buffer, batch.received_at
        traces = set(cols.trace_id)
        # Split new traces from buffered ones in C (not set.difference(buffer): for a dict subclass
        # that walks the whole buffer).
        new = list(filterfalse(buffer.__contains__, traces))
        for trace_id in filter(buffer.__contains__, traces) if len(new) < len(traces) else ():
            entry = buffer[trace_id]
            buffer.move_to_end(trace_id)
            entry.last_arrival = now
            entry.batches.append(ref)
        waiting = self.waiting
        for trace_id in new:
            waited = waiting.pop(trace_id, None) if waiting else None
            if waited is None:
                buffer[trace_id] = TraceEntry(now, ref)
            else:
                waited.last_arrival = now
                waited.batches.append(ref)
                buffer[trace_id] = waited
        if new:
            self.arrivals.append((now, new))  # one record per batch, not one per trace
        parents = cols.parent_span_id
        if b"" in parents:
            for i in indices(parents, b""):
                buffer[cols.trace_id[i]].rooted = True
        if max(cols.duration_ns) > self.floor_ns:
            self._candidates(cols)
        while len(buffer) > self.config.max_traces:
            trace_id, entry = buffer.popitem(last=False)
            self.evicted += 1
            self.evict("trace_evicted")
            if entry.candidates:
                self.ready.append((trace_id, entry))
            else:
                self.held -= len(entry.spans)

    def _candidates(self, cols: SpanColumns) -> None:
        operations, agents = cols.attribute_rows("gen_ai.operation.name"), cols.attribute_rows("gen_ai.agent.name")
        for i in where(map(self.floor_ns.__lt__, cols.duration_ns), len(cols)):
            agent = agents.get(i)
            if operations.get(i) in AGENT_OPERATIONS or (cols.kind[i] == SERVER and agent):
                self.buffer[cols.trace_id[i]].add_candidate(
                    (cols.span_id[i], cols.start_ns[i], cols.end_ns[i], str(agent or cols.name[i]), cols.service[i]))

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, now: float) -> list[Observation]:
        decided = self._decided(now)
        self._compact(now)
        blocked: dict[tuple[str, str], list[Any]] = {}  # → [own s, limit, examples, start of the worst]
        for trace_id, entry in decided:
            for (span_id, start, _end, agent, service), own_ns in self._own_times(trace_id, entry):
                limit = self.threshold_for({"service": service, "agent": agent}, self.config.blocked_limit)
                own = own_ns / 1e9
                if own <= limit:
                    continue
                slot = blocked.setdefault((service, agent), [0.0, limit, Examples(), start / 1e9])
                slot[2].add(trace_id, span_id)
                if own > slot[0]:
                    slot[0], slot[3] = own, start / 1e9
            entry.candidates = ()  # judged: a trace kept waiting for its root is not judged twice
            if self.waiting.get(trace_id) is not entry and self.buffer.get(trace_id) is not entry:
                self.held -= len(entry.spans)  # judged and let go of
        self._within_span_limit()
        return [self._observation(service, agent, own, limit, examples, started, now)
                for (service, agent), (own, limit, examples, started) in blocked.items()]

    def _decided(self, now: float) -> list[tuple[bytes, TraceEntry]]:
        """Traces quiet for decision_wait (and evicted ones) that hold a long agent span."""
        decided, self.ready = self.ready, []
        buffer, wait = self.buffer, self.config.decision_wait
        while buffer:
            trace_id, entry = buffer.popitem(last=False)  # the least recently arrived
            if now - entry.last_arrival < wait:
                buffer[trace_id] = entry  # not yet: back to the front
                buffer.move_to_end(trace_id, last=False)
                break
            if entry.candidates:
                decided.append((trace_id, entry))
            if not entry.rooted:
                self.waiting[trace_id] = entry
                if len(self.waiting) > self.config.max_traces:
                    self._forget(self.waiting, "trace_evicted")
            elif not entry.candidates:
                self.held -= len(entry.spans)
        return decided

    def _forget(self, traces: "OrderedDict[bytes, TraceEntry]", reason: str) -> None:
        """Let go of the oldest trace of `traces` (the buffer or the traces kept aside)."""
        trace_id, entry = traces.popitem(last=False)
        self.held -= len(entry.spans)
        self.evict(reason)

    def _within_span_limit(self) -> None:
        """Past max_spans compacted spans, forget the traces kept aside longest, then the least
        recently arrived buffered ones."""
        while self.held > self.config.max_spans and (self.waiting or self.buffer):
            self._forget(self.waiting if self.waiting else self.buffer, "span_limit")

    def _compact(self, now: float) -> None:
        """Compact the traces buffered for compact_after since their first span; one that keeps
        growing is queued again, so its later batches are compacted in turn."""
        arrivals, horizon = self.arrivals, now - self.config.compact_after
        while arrivals and arrivals[0][0] <= horizon:
            _, trace_ids = arrivals.popleft()
            again = []
            for trace_id in trace_ids:
                entry = self.buffer.get(trace_id) or self.waiting.get(trace_id)
                if entry is not None and entry.batches:
                    self.held += entry.compact(trace_id)
                    again.append(trace_id)
            if again:
                arrivals.append((now, again))

    def _own_times(self, trace_id: bytes, entry: TraceEntry) -> list[tuple[Candidate, int]]:
        """Each long agent span with its own time: duration minus its children's union (ns)."""
        self.held += entry.compact(trace_id)
        children: dict[bytes, list[tuple[int, int]]] = {c[0]: [] for c in entry.candidates}
        for parent, start, end in entry.spans:
            intervals = children.get(parent)
            if intervals is not None:
                intervals.append((start, end))
        return [(c, (c[2] - c[1]) - covered(children[c[0]], c[1], c[2])) for c in entry.candidates]

    def _observation(self, service: str, agent: str, own: float, limit: float, examples: Examples,
                     started: float, now: float) -> Observation:
        return Observation(
            self.kind, {"service": service, "agent": agent}, round(own, 3), limit, "seconds", (started, now),
            self.config.severity,
            f"{agent} ({service}) was blocked for {own:.1f}s of its own time, not covered by any child "
            f"span (limit {limit:g}s)", examples, firing=True)


def unique(batches: list[BatchRef]) -> list[BatchRef]:
    """Each batch once (robustness: the same batch observed twice adds nothing twice)."""
    return list({id(batch[0]): batch for batch in batches}.values())


def indices(values: list[bytes], wanted: bytes) -> list[int]:
    """Positions of `wanted` in `values` (list.index runs at C speed)."""
    out: list[int] = []
    i = -1
    while True:
        try:
            i = values.index(wanted, i + 1)
        except ValueError:
            return out
        out.append(i)


def covered(intervals: list[tuple[int, int]], start: int, end: int) -> int:
    """Length of the union of `intervals` clipped to [start, end]."""
    total, reach = 0, start
    for s, e in sorted(intervals):
        s, e = max(s, reach), min(e, end)
        if e > s:
            total += e - s
            reach = e
    return total

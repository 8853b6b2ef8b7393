"""deadlock: an agent blocked for more than `blocked_limit` (10 s), seen two ways.

Live (`live`, on): the connector's in-flight table (connectors/triggers/inflight.py) holds the
spans still open, from partial-span heartbeats and logfire pending spans. At every evaluation
tick, on the connector's clock rather than at event time (connectors/triggers/live.py), an open
agent span whose progress stopped for over the limit fires: progress is the latest start or
end of any span below it (a child that started counts, one still open does not move it on),
or its own start. So an agent blocked in a tool call fires `blocked_limit` after the call
started, within one evaluation interval (250 ms); a long agent whose children keep ending
never does. Only the innermost open agent or LLM call is judged: an agent with an open agent
below it leaves the judgement to that one (one event per block), and one with an open LLM call
below it is not blocked while the call streams; the call itself fires only past `llm_ceiling`
(120 s; subject: its nearest open agent). The event's examples carry the blocked span's trace
and span id. A live episode (its own episode key, apart from after-the-fact ones) resolves at
the next evaluation once none of its subject's spans is blocked: the span ended (its span
arrived, or a heartbeat `stop`), a child started or ended, or the table forgot it. A span
fired live is not judged again after the fact. The agent's clock is trusted as for every span
timestamp; a first heartbeat later than the limit (a client's initial heartbeat delay) delays
the event by as much. Judging costs one pass over the open spans per evaluation and, for an
agent past its limit, one pass over its trace's buffered spans (the children that ended
before the table knew it); a span is looked at again only once it could be blocked.

After the fact: an agent span whose own time — its duration minus the union of its direct
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

What the buffer keeps: per trace, references to the five column lists each batch already
has (`trace_id`, `span_id`, `parent_span_id`, `start_ns`, `end_ns` of SpanColumns: shared,
not copied, no span objects or messages), plus a tuple (span id, start, end, agent, service)
per long agent span. So the hot path does per-trace work, not per-span work. Off the hot
path, a trace still buffered `compact_after` (10 s) after its first span is compacted: its
spans are copied out of those batches as (parent, start, end) tuples, so a long-running
trace does not keep whole batches alive; short traces are judged and dropped before that.
(The span ids let the live judgement tell which ended spans are below an open agent.)

Bounded state: besides `max_traces` (buffered) and `max_traces` (kept aside), the compacted
spans of all held traces are at most `max_spans` (200,000, about 25 MB); past that the traces
kept aside longest are forgotten first, then the least recently arrived buffered ones
(`agentdbg_trigger_state_evictions_total{reason="span_limit"}`, one per trace). Batches
themselves are referenced only until `compact_after`.

A span that never ends is never exported: after the fact, a deadlock is seen only once the
agent span ends (for example by a timeout); live, it is seen while it lasts.

Subject: `service`, `agent` (`gen_ai.agent.name`, else the span name). `observed` is the
largest own time in seconds among the subject's spans judged in this evaluation (live: the
longest time without progress; unit `seconds`); an after-the-fact episode resolves once no
blocked span has come for `resolve_after`.
Per-subject `overrides` set the limit. Severity critical.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import replace
from itertools import filterfalse
from typing import Any, Mapping

from pydantic import PositiveInt

from connectors.triggers.checkpoint_state import Part
from connectors.triggers.columnar import positions, where
from connectors.triggers.detectors.base import Detector, DetectorConfig, Severity
from connectors.triggers.event import Examples, Observation
from connectors.triggers.inflight import AGENT, LLM, MAX_DEPTH, OTHER, InflightSpans, OpenSpan, role_of
from pipeline.config.units import Duration
from pipeline.pdata.spans import SpanColumns
from pipeline.pdata.traces import Traces

Candidate = tuple[bytes, int, int, str, str]  # span id, start ns, end ns, agent, service
BatchRef = tuple[list[bytes], list[bytes], list[bytes], list[int], list[int]]  # trace, span, parent, start, end
Compacted = tuple[bytes, bytes, int, int]  # span id, parent, start ns, end ns


class DeadlockConfig(DetectorConfig):
    severity: Severity = "critical"
    blocked_limit: Duration = 10.0
    decision_wait: Duration = 5.0
    max_traces: PositiveInt = 50_000
    max_spans: PositiveInt = 200_000
    compact_after: Duration = 10.0
    # Judged live from the connector's in-flight table (connectors/triggers/inflight.py).
    live: bool = True
    llm_ceiling: Duration = 120.0


class TraceEntry:
    __slots__ = ("last_arrival", "batches", "spans", "candidates", "rooted")

    def __init__(self, last_arrival: float = 0.0, batch: BatchRef | None = None) -> None:
        self.last_arrival = last_arrival
        self.batches: list[BatchRef] = [batch] if batch is not None else []  # not yet compacted
        # Empty tuples until needed: most traces are never compacted and hold no long agent span,
        # and every list allocated per trace is one more object for the garbage collector.
        self.spans: list[Compacted] | tuple = ()  # compacted: (span id, parent, start, end)
        self.candidates: list[Candidate] | tuple = ()
        self.rooted = False  # its root span (no parent) has arrived: nothing of it is still running

    def all_spans(self, trace_id: bytes) -> list[Compacted]:
        """The trace's spans: those compacted and those still in its batches."""
        spans = list(self.spans)
        for trace_ids, span_ids, parents, starts, ends in unique(self.batches):
            for i in positions(trace_ids, trace_id):
                spans.append((span_ids[i], parents[i], starts[i], ends[i]))
        return spans

    def compact(self, trace_id: bytes) -> int:
        """Copy this trace's spans out of its batches, so they can be freed; returns how many were added."""
        if not self.batches:
            return 0
        spans = self.all_spans(trace_id)
        added = len(spans) - len(self.spans)
        self.spans = spans
        self.batches = []
        return added

    def add_candidate(self, candidate: Candidate) -> None:
        self.candidates = [*self.candidates, candidate]

    def dump(self, trace_id: bytes, waiting: bool) -> dict[str, Any]:
        """The trace as JSON values (ids in hex), for a checkpoint."""
        return {"waiting": waiting, "last_arrival": self.last_arrival, "rooted": self.rooted,
                "spans": [[s.hex(), p.hex(), start, end] for s, p, start, end in self.all_spans(trace_id)],
                "candidates": [[s.hex(), start, end, agent, service] for s, start, end, agent, service
                               in self.candidates]}

    @classmethod
    def load(cls, value: dict[str, Any]) -> TraceEntry:
        entry = cls(value["last_arrival"])
        entry.rooted = value["rooted"]
        entry.spans = [(bytes.fromhex(s), bytes.fromhex(p), start, end) for s, p, start, end in value["spans"]]
        entry.candidates = [(bytes.fromhex(s), start, end, agent, service)
                            for s, start, end, agent, service in value["candidates"]]
        return entry


class HeldTraces:
    """Deadlock's checkpoint part: the traces it may still judge, by trace id (hex). A trace whose
    root has arrived and that holds no long agent span is left out: nothing of it can fire. The
    others matter after a restart: an agent span that ends later is judged with the children that
    came before it, which would otherwise look like time it spent blocked."""

    def __init__(self, detector: DeadlockDetector) -> None:
        self.detector = detector

    def export(self) -> dict[Any, Any]:
        held = self.detector
        out = {trace_id.hex(): entry.dump(trace_id, True) for trace_id, entry in held.waiting.items()}
        out.update((trace_id.hex(), entry.dump(trace_id, False)) for trace_id, entry in held.buffer.items()
                   if entry.candidates or not entry.rooted)
        return out

    def load(self, values: Mapping[Any, Any]) -> None:
        held = self.detector
        for key, value in sorted(values.items(), key=lambda item: item[1]["last_arrival"]):
            trace_id = bytes.fromhex(key)
            if trace_id in held.buffer or trace_id in held.waiting:
                continue
            entry = TraceEntry.load(value)
            (held.waiting if value["waiting"] else held.buffer)[trace_id] = entry
            held.held += len(entry.spans)

    def forget(self, key: Any) -> None:
        held, trace_id = self.detector, bytes.fromhex(key)
        for traces in (held.buffer, held.waiting):
            entry = traces.pop(trace_id, None)
            if entry is not None:
                held.held -= len(entry.spans)


class DeadlockDetector(Detector[DeadlockConfig]):
    kind = "deadlock"
    attribute_keys = ("gen_ai.operation.name", "gen_ai.agent.name")
    # Kept from the new instance on a reload: floor_ns comes from the config, and inflight is the
    # new connector's table (which took the old one's state).
    config_derived = ("floor_ns", "inflight")

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
        # Live judgement: the episodes firing at the last evaluation (to resolve them when their
        # span ends), the span ids that fired live (not judged again after the fact), and per open
        # agent span the earliest time it can be blocked (its progress + the limit: not looked at
        # again before then).
        self.live_firing: dict[str, Observation] = {}
        self.live_judged: OrderedDict[bytes, None] = OrderedDict()
        self.not_before: dict[bytes, float] = {}
        self.inflight: InflightSpans | None = None  # the connector's table of open spans

    def state_parts(self) -> dict[str, Part]:
        return {"trace": HeldTraces(self)}

    # -- hot path --------------------------------------------------------------------------------
    def observe(self, batch: Traces) -> None:
        cols = batch.columns
        if not len(cols):
            return
        ref: BatchRef = (cols.trace_id, cols.span_id, cols.parent_span_id, cols.start_ns, cols.end_ns)
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
            for i in positions(parents, b""):
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
            if role_of(operations.get(i), agent, cols.kind[i]) == AGENT:
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
                if own <= limit or span_id in self.live_judged:
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

    # -- live: open spans of the in-flight table ---------------------------------------------------
    def evaluate_live(self, now: float) -> list[Observation]:
        """On the connector's clock (UNIX s), not at event time: open agent spans without progress
        for over their limit, open LLM calls over the ceiling; and a resolution for each live
        episode whose span ended or moved on."""
        if self.inflight is None or not self.config.live:
            return []
        open_spans = {span.span_id: span for span in self.inflight.open_spans()}
        delegated, owners = self._delegated(open_spans)
        blocked: dict[tuple[str, str], Observation] = {}
        for span in open_spans.values():
            if span.role == LLM and now - span.start > self.config.llm_ceiling:
                self._blocked(blocked, span, owners.get(span.span_id, span.agent), span.start, now,
                              self.config.llm_ceiling, "has streamed")
            elif span.role == AGENT and span.span_id not in delegated:
                limit = self.threshold_for({"service": span.service, "agent": span.agent}, self.config.blocked_limit)
                if now - span.start <= limit or self.not_before.get(span.span_id, 0.0) > now:
                    continue
                progress = max(span.progress, self._progress(span))
                if now - progress > limit:
                    self._blocked(blocked, span, span.agent, progress, now, limit, "has made no progress")
                else:
                    self.not_before[span.span_id] = progress + limit
        self.not_before = {k: v for k, v in self.not_before.items() if k in open_spans}
        return list(blocked.values()) + self._live_resolved(blocked, now)

    @staticmethod
    def _delegated(open_spans: dict[bytes, OpenSpan]) -> tuple[set[bytes], dict[bytes, str]]:
        """The open spans with an open agent or LLM call below them, which is judged instead (one
        event per block, at the innermost agent); and each open LLM call's nearest open agent."""
        delegated: set[bytes] = set()
        owners: dict[bytes, str] = {}
        for span in open_spans.values():
            if span.role == OTHER:
                continue
            parent, depth = open_spans.get(span.parent), 0
            while parent is not None and depth < MAX_DEPTH:  # the bound: ids that loop in bad data
                if span.role == LLM and parent.role == AGENT:
                    owners.setdefault(span.span_id, parent.agent)
                delegated.add(parent.span_id)
                parent, depth = open_spans.get(parent.parent), depth + 1
        return delegated, owners

    def _progress(self, span: OpenSpan) -> float:
        """The latest start or end (UNIX s) of an ended span below `span` among those of its trace
        held in the buffer: the children that ended before the in-flight table knew the trace
        (it tracks progress from then on: OpenSpan.progress)."""
        trace_id = span.trace_id
        entry = self.buffer.get(trace_id) or self.waiting.get(trace_id)
        if entry is None:
            return span.start
        self.held += entry.compact(trace_id)
        parent_of = {span_id: parent for span_id, parent, _, _ in entry.spans}
        latest, below = span.start, {span.span_id: True}
        for span_id, _, start, end in entry.spans:
            at = max(start, end) / 1e9
            if at > latest and descends(span_id, parent_of, below):
                latest = at
        return latest

    def _blocked(self, blocked: dict[tuple[str, str], Observation], span: OpenSpan, agent: str, since: float,
                 now: float, limit: float, what: str) -> None:
        """Add `span`, stuck since `since`, to its subject's live observation."""
        key, stuck = (span.service, agent), round(now - since, 3)
        obs = blocked.get(key)
        if obs is None:
            obs = blocked[key] = Observation(
                self.kind, {"service": span.service, "agent": agent}, stuck, limit, "seconds", (since, now),
                self.config.severity, "", Examples(), firing=True, qualifier="live")
        if stuck >= obs.observed:
            obs.observed, obs.window = stuck, (since, now)
            obs.message = (f"{agent} ({span.service}) is blocked now: {span.name} {what} for {stuck:.1f}s "
                           f"without a child span starting or ending (limit {limit:g}s)")
        obs.examples.add(span.trace_id, span.span_id)
        self.live_judged[span.span_id] = None
        if len(self.live_judged) > self.config.max_traces:
            self.live_judged.popitem(last=False)

    def _live_resolved(self, blocked: dict[tuple[str, str], Observation], now: float) -> list[Observation]:
        """A live episode resolves at once when none of its subject's spans is blocked any more:
        the span ended (it arrived, or a `stop`), or a child started or ended."""
        current = {obs.key: obs for obs in blocked.values()}
        resolved = [replace(obs, firing=False, resolve_after=0.0, window=(obs.window[0], now))
                    for key, obs in self.live_firing.items() if key not in current]
        self.live_firing = current
        return resolved

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
        for _, parent, start, end in entry.spans:
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


def descends(span_id: bytes, parent_of: dict[bytes, bytes], below: dict[bytes, bool]) -> bool:
    """Whether `span_id` is below the span `below` was seeded with (`{span id: True}`); `below`
    remembers the answer for every span on the way up, so a trace is walked once."""
    path: list[bytes] = []
    node: bytes | None = span_id
    while node is not None and node not in below and len(path) < MAX_DEPTH:
        path.append(node)
        node = parent_of.get(node)
    answer = below.get(node, False) if node is not None else False
    for step in path:
        below[step] = answer
    return answer


def covered(intervals: list[tuple[int, int]], start: int, end: int) -> int:
    """Length of the union of `intervals` clipped to [start, end]."""
    total, reach = 0, start
    for s, e in sorted(intervals):
        s, e = max(s, reach), min(e, end)
        if e > s:
            total += e - s
            reach = e
    return total

"""Session (conversation) id per trace.

A trace's session is the first non-empty of the session keys (docs/genai-attributes.md#session-id:
`gen_ai.conversation.id`, `session.id`, `langfuse.session.id`,
`traceloop.association.properties.session_id`, the OpenAI Agents group ids,
`gcp.vertex.agent.session_id`) found on any of its spans; failing that, the trace id
itself (AgentOps: a session is a trace), unless `session_from_trace` is off. Every span of
the trace that lacks `gen_ai.conversation.id` gets that value, so one query by
conversation finds all of it, HTTP and database spans included.

Only traces with at least one GenAI span are touched: plain service traffic passes as it
came. Spans of one trace often arrive in several batches, so a bounded memory of recent
traces carries the answer over; a later batch that brings a better key (a real session id
after a trace-id fallback) upgrades it for the spans that follow. Spans already sent keep
what they got.

A root span that names the session often comes in a later export request than its children
(they end first). The processor does not hold spans back waiting for it: that would need a
per-trace span buffer with a timer, adding latency to every sessionless GenAI trace and
memory in proportion to spans in flight. The children go on with the trace-id fallback, which
is a marker, not a loss: the stores' session summaries count such spans under their trace and
the explorer folds them into the session the root names for that trace
(pipeline/clickhouse/sessions.py, extensions/explorer/queries.py). Ingest stays one pass and
the memory stays `MAX_TRACES` small entries (tests/unit/test_genai_session.py).
"""
from __future__ import annotations

MAX_TRACES = 50_000  # recent traces remembered across batches (about 10 MB at most)


class TraceMemory:
    """trace id → (priority, session id), oldest forgotten first."""

    def __init__(self, max_traces: int = MAX_TRACES) -> None:
        self.max_traces = max_traces
        self._items: dict[bytes, tuple[int, str]] = {}

    def get(self, trace_id: bytes) -> tuple[int, str] | None:
        return self._items.get(trace_id)

    def put(self, trace_id: bytes, found: tuple[int, str]) -> None:
        items = self._items
        if trace_id not in items and len(items) >= self.max_traces:
            del items[next(iter(items))]  # dicts keep insertion order: this is the oldest
        items[trace_id] = found

    def __len__(self) -> int:
        return len(self._items)


class BatchSessions:
    """The session candidates of one batch, per trace; `resolve` gives each trace's answer."""

    def __init__(self, memory: TraceMemory, fallback_priority: int, from_trace: bool) -> None:
        self.memory = memory
        self.fallback_priority = fallback_priority
        self.from_trace = from_trace
        self.best: dict[bytes, tuple[int, str]] = {}

    def offer(self, trace_id: bytes, priority: int, value: str) -> None:
        """A session value seen on a span of the trace (lower priority number wins)."""
        current = self.best.get(trace_id)
        if current is None or priority < current[0]:
            self.best[trace_id] = (priority, value)

    def genai_trace(self, trace_id: bytes) -> None:
        """The trace has a GenAI span: it gets a session even without a session key."""
        self.best.setdefault(trace_id, (self.fallback_priority + 1, ""))

    def resolve(self) -> dict[bytes, str]:
        """trace id → session id for every GenAI trace of the batch (or remembered as one)."""
        resolved: dict[bytes, str] = {}
        for trace_id, found in self.best.items():
            remembered = self.memory.get(trace_id)
            if remembered is not None and remembered[0] <= found[0]:
                found = remembered
            elif not found[1]:
                if not self.from_trace:
                    continue
                found = (self.fallback_priority, trace_id.hex())
            self.memory.put(trace_id, found)
            resolved[trace_id] = found[1]
        return resolved

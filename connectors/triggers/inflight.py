"""In-flight spans: what agents have started and not yet ended, read from two real sources.

An ended span says nothing about an agent blocked now: a call that never returns never ends
its span, so nothing is exported. Two OpenTelemetry clients announce spans while they run,
and the `triggers` connector reads both (`connectors: triggers: inflight:`):

- **Partial-span heartbeats** (PyPI `partial-span-processor`, from the OpenTelemetry
  community's partial-span proposal) arrive on the *logs* pipeline: for every span still
  open, a log record every `partial.frequency` with `partial.event` = `heartbeat`, and one
  `partial.event` = `stop` when the span ends (only for a span that had a heartbeat). The
  record's trace and span ids are the span's; its body is the span so far as OTLP/JSON
  `TracesData` (`partial.body.type` = `json/v1`). The body is read only the first time a
  span id is heard of, with orjson into just the fields this table keeps
  (connectors/triggers/partial_body.py: name, kind, start, parent, service, GenAI attributes); later
  heartbeats only refresh when it was last heard of, so a steady stream costs a dictionary
  lookup per record.
- **Logfire pending spans** arrive on the *traces* pipeline: when a span starts, logfire
  exports a zero-length placeholder (`logfire.span_type` = `pending_span`) whose parent is
  the still-open span and whose `logfire.pending_parent_id` is the open span's own parent
  (all zeros for a root). Logfire sends them only through its exporters that handle them:
  the exporter to a Logfire backend (`send_to_logfire` with a token and
  `advanced.base_url`; on unless `advanced.pending_spans` is false), its test exporter and
  its simple console exporter, not the plain OTLP exporter of `OTEL_EXPORTER_OTLP_*`. A
  placeholder is one heartbeat, at the start; there are no later ones.

An entry is dropped when the span itself arrives on the traces pipeline. A `stop` marks it
ended (with its end time, so its parent's progress counts it before the ended span arrives)
and it is dropped once the span arrives. An entry not heard of for `forget_after` (10 min) is
forgotten, counted in `agentdbg_trigger_state_evictions_total{detector="inflight",
reason="forgotten"}`: for a client that died mid-span, or a pending span whose real span was
never exported. At most `max_spans` (100,000) entries are held; past that the one heard of
longest ago goes first (`reason="span_limit"`). A heartbeat whose body cannot be read is
counted (`agentdbg_trigger_inflight_records_total{event="unreadable"}`) and skipped; nothing
else of its batch is lost, and the logs go on to their other exporters untouched.

Times: `start` and `end` are the client's span timestamps (UNIX seconds), `seen` is the
daemon's clock when the entry was last heard of. The state survives a SIGHUP reload.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator, Mapping

from pydantic import PositiveInt

from connectors.triggers.columnar import positions
from connectors.triggers.partial_body import AGENT_NAME, OPERATION, read_open_span
from pipeline.component import StrictConfig
from pipeline.config.units import Duration
from pipeline.pdata.logs import Logs, iter_log_records, partial_event
from pipeline.pdata.spans import SpanColumns
from pipeline.pdata.traces import Traces

SPAN_TYPE = "logfire.span_type"
PENDING_PARENT = "logfire.pending_parent_id"
SERVER = 2
AGENT_OPERATIONS = ("invoke_agent", "invoke_workflow")
LLM_OPERATIONS = ("chat", "text_completion", "generate_content", "embeddings")
AGENT, LLM, OTHER = "agent", "llm", "other"
ARRIVED_MEMORY = 10_000
MAX_DEPTH = 256  # parent links followed at most


class InflightConfig(StrictConfig):
    enabled: bool = True
    max_spans: PositiveInt = 100_000
    forget_after: Duration = 600.0


@dataclass(slots=True)
class OpenSpan:
    trace_id: bytes
    span_id: bytes
    parent: bytes  # b"" for a root
    name: str
    service: str
    role: str  # AGENT, LLM or OTHER
    agent: str  # gen_ai.agent.name, else the span name
    start: float  # UNIX s, the client's clock
    seen: float  # UNIX s, the daemon's clock: when it was last heard of
    progress: float  # UNIX s, client clock: the latest start or end of a span below it (its start)
    end: float | None = None  # set by a `stop`: ended, its span not yet arrived


def role_of(operation: object, agent: object, kind: int) -> str:
    """An agent span as the deadlock detector names them; an LLM call by its GenAI operation."""
    if operation in AGENT_OPERATIONS or (kind == SERVER and agent):
        return AGENT
    return LLM if operation in LLM_OPERATIONS else OTHER


class InflightSpans:
    kind = "inflight"
    attribute_keys = (SPAN_TYPE, PENDING_PARENT, OPERATION, AGENT_NAME)

    def __init__(self, config: InflightConfig) -> None:
        self.config = config
        self.spans: OrderedDict[bytes, OpenSpan] = OrderedDict()  # by span id, least recently heard of first
        self.by_trace: dict[bytes, set[bytes]] = {}
        self.drops: dict[str, int] = {}  # evictions by reason since the connector last counted them
        self.records: dict[str, int] = {}  # heartbeat, stop, pending, unreadable: since last counted
        self.arrived: OrderedDict[bytes, None] = OrderedDict()  # span ids of entries dropped on arrival

    # -- the logs pipeline: partial-span heartbeats ----------------------------------------------
    def observe_logs(self, batch: Logs) -> None:
        now = batch.received_at
        for _, _, record in iter_log_records(batch.message):
            event = partial_event(record)
            if event not in ("heartbeat", "stop"):
                continue
            self._count(str(event))
            entry = self.spans.get(record.span_id)
            if entry is None:
                if record.span_id in self.arrived:
                    continue  # a heartbeat overtaken by its ended span
                entry = self._announce(record.body.string_value, record.span_id, now)
            if entry is None:
                continue
            entry.seen = now
            self.spans.move_to_end(entry.span_id)
            if event == "stop" and entry.end is None:
                entry.end = record.time_unix_nano / 1e9 or now
                self._progressed(entry.parent, entry.end)

    def _announce(self, body: str, span_id: bytes, now: float) -> OpenSpan | None:
        """The entry of `span_id` from the span in a heartbeat's OTLP/JSON body; None (counted)
        when the body cannot be read or holds another span."""
        span = read_open_span(body, span_id)
        if span is None:
            self._count("unreadable")
            return None
        entry = self._add(OpenSpan(span.trace_id, span_id, span.parent, span.name, span.service,
                                   role_of(span.operation, span.agent, span.kind), str(span.agent or span.name),
                                   span.start_ns / 1e9, now, span.start_ns / 1e9), now)
        entry.end = span.end_ns / 1e9 if span.end_ns else None
        return entry

    # -- the traces pipeline: ended spans and logfire's pending spans ----------------------------
    def observe(self, batch: Traces) -> None:
        cols = batch.columns
        types = cols.attribute_rows(SPAN_TYPE)
        if types:
            self._pending(cols, types, batch.received_at)
        if self.by_trace:
            self._ended(cols)

    def _pending(self, cols: SpanColumns, types: Mapping[int, object], now: float) -> None:
        """Each placeholder announces its parent, the open span; the open span's own parent is in
        logfire.pending_parent_id (all zeros for a root)."""
        parents = cols.attribute_rows(PENDING_PARENT)
        for i, span_type in types.items():
            open_id = cols.parent_span_id[i]
            if span_type != "pending_span" or not open_id or open_id in self.arrived:
                continue
            self._count("pending")
            try:
                parent = bytes.fromhex(str(parents.get(i) or ""))
            except ValueError:
                self._count("unreadable")
                continue
            self._add(self._entry(cols, i, open_id, parent if parent.strip(b"\0") else b"", now), now)

    def _ended(self, cols: SpanColumns) -> None:
        """The spans that arrived in a trace with open spans: their open ancestors progressed, and
        an entry of their own is dropped (it ended)."""
        by_trace, spans = self.by_trace, self.spans
        for trace_id in filter(by_trace.__contains__, set(cols.trace_id)):
            for i in positions(cols.trace_id, trace_id):
                self._progressed(cols.parent_span_id[i], max(cols.start_ns[i], cols.end_ns[i]) / 1e9)
                span_id = cols.span_id[i]
                if span_id in spans:
                    self._remove(spans[span_id])
                    self._arrived(span_id)

    def _progressed(self, parent: bytes, at: float) -> None:
        """A span below `parent` started or ended at `at`: every open ancestor made progress."""
        entry, depth = self.spans.get(parent), 0
        while entry is not None and depth < MAX_DEPTH:  # the bound: ids that loop in bad data
            if at > entry.progress:
                entry.progress = at
            entry, depth = self.spans.get(entry.parent), depth + 1

    def _arrived(self, span_id: bytes) -> None:
        """Remember a few ended span ids, so a heartbeat that arrives after its span (the logs and
        traces pipelines are not ordered with each other) does not open it again."""
        self.arrived[span_id] = None
        if len(self.arrived) > ARRIVED_MEMORY:
            self.arrived.popitem(last=False)

    # -- state -----------------------------------------------------------------------------------
    @staticmethod
    def _entry(cols: SpanColumns, i: int, span_id: bytes, parent: bytes, now: float) -> OpenSpan:
        """The entry a logfire placeholder at row `i` announces for its open parent `span_id`."""
        operation = cols.attribute_rows(OPERATION).get(i)
        agent = cols.attribute_rows(AGENT_NAME).get(i)
        start = cols.start_ns[i] / 1e9
        return OpenSpan(cols.trace_id[i], span_id, parent, cols.name[i], cols.service[i],
                        role_of(operation, agent, cols.kind[i]), str(agent or cols.name[i]), start, now, start)

    def _add(self, candidate: OpenSpan, now: float) -> OpenSpan:
        """The entry of `candidate`'s span id: the one held, else `candidate`, added (a child of
        its parent started)."""
        span_id = candidate.span_id
        entry = self.spans.get(span_id)
        if entry is None:
            entry = self.spans[span_id] = candidate
            self.by_trace.setdefault(entry.trace_id, set()).add(span_id)
            self._progressed(entry.parent, entry.start)  # a child started
            if len(self.spans) > self.config.max_spans:
                self._evict_oldest("span_limit")
        entry.seen = now
        self.spans.move_to_end(span_id)
        return entry

    def _remove(self, entry: OpenSpan) -> None:
        del self.spans[entry.span_id]
        ids = self.by_trace.get(entry.trace_id)
        if ids is not None:
            ids.discard(entry.span_id)
            if not ids:
                del self.by_trace[entry.trace_id]

    def _evict_oldest(self, reason: str) -> None:
        self._remove(next(iter(self.spans.values())))
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def expire(self, now: float) -> None:
        """Forget the entries not heard of for forget_after (counted)."""
        horizon = now - self.config.forget_after
        while self.spans and next(iter(self.spans.values())).seen < horizon:
            self._evict_oldest("forgotten")

    def _count(self, event: str) -> None:
        self.records[event] = self.records.get(event, 0) + 1

    # -- readers ---------------------------------------------------------------------------------
    def open_spans(self) -> Iterator[OpenSpan]:
        return (s for s in self.spans.values() if s.end is None)

    def take_state_from(self, previous: InflightSpans) -> None:
        """Carry the table over a reload; the new config's bounds apply from the next evaluation."""
        self.spans, self.by_trace = previous.spans, previous.by_trace
        self.drops, self.records, self.arrived = previous.drops, previous.records, previous.arrived

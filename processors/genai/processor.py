"""The `genai` processor's batch walk: add canonical GenAI attributes, resolve sessions.

Per span, the wire work is compiled (native/, docs/native.md): one walk over the batch's
bytes picks the attributes the alias tables name (`agentdbg_native.Picker`, given the keys
once here), and the attributes to add are appended to their spans' encodings in one more
(`agentdbg_native.splice`), which is what merging them into each span gives; the batch then
carries the new bytes, unparsed. What to add is decided here, per GenAI span, from plain
values. A span the normaliser cannot handle passes on as it came; bytes the picker cannot
read (never the case for a batch a receiver accepted) pass the batch on untouched, counted
as a failure and logged.
"""
from __future__ import annotations

import agentdbg_native as native

from pipeline.catalogue import price_book
from pipeline.component import Consumer, Processor, Settings
from pipeline.pdata.batch import Batch
from pipeline.pdata.traces import Traces
from pipeline.telemetry import metrics
from processors.genai import aliases as A
from processors.genai.config import GenAIConfig
from processors.genai.normalise import Normaliser, Result, SpanFacts
from processors.genai.session import BatchSessions, TraceMemory
from processors.genai.values import Encoder, Scalar

MAX_MODEL_LABELS = 200  # distinct `model` label values on the unpriced metric; the rest count as "other"
_labelled_models: set[str] = set()


def count_unpriced(model: str) -> None:
    """agentdbg_genai_unpriced_spans_total{model}, with the label set bounded."""
    label = model or "unknown"
    if label not in _labelled_models:
        if len(_labelled_models) >= MAX_MODEL_LABELS:
            label = "other"
        else:
            _labelled_models.add(label)
    metrics.genai_unpriced_spans.labels(label).inc()


class GenAIProcessor(Processor[Batch]):
    def __init__(self, settings: Settings, config: GenAIConfig, next_consumer: Consumer) -> None:
        super().__init__(settings, next_consumer)
        self.config = config
        book = price_book(config.prices_file) if config.write_cost else None
        self.normaliser = Normaliser(frozenset(config.enabled_sources), book, count_unpriced)
        self.memory = TraceMemory()
        self.encoder = Encoder()
        self.picker = native.Picker(A.WANTED_KEYS, A.AGENTS_SCOPES)
        self.fallback_priority = len(A.SESSION_KEYS)
        self.failures = 0

    async def consume(self, batch: Batch) -> None:
        if isinstance(batch, Traces):
            self.process(batch)
        await self.next.consume(batch)

    def process(self, batch: Traces) -> int:
        """Add the canonical attributes to every span of the batch (its bytes are replaced);
        returns how many attributes were written (0: the batch is untouched)."""
        wire = batch.wire()
        try:
            trace_ids, candidates = self.picker.pick(wire)
        except ValueError:
            self._failed("a batch's bytes could not be read; passed on unchanged", batch.item_count)
            return 0
        sessions = BatchSessions(self.memory, self.fallback_priority, self.config.session_from_trace)
        inserts: dict[int, list[bytes]] = {}  # span index → encoded attributes to append
        settled: set[int] = set()  # GenAI spans that carry their own gen_ai.conversation.id
        written = 0
        for index, attrs, name, status_code, exception_type, scope_name in candidates:
            result = self._normalise(attrs, SpanFacts(name, status_code, exception_type), scope_name)
            if result is None:
                continue
            written += self._apply(trace_ids[index], result, sessions, inserts.setdefault(index, []))
            if A.CONVERSATION in attrs:
                settled.add(index)
        written += self._assign_sessions(sessions, trace_ids, settled, inserts)
        parts = [(index, b"".join(encoded)) for index, encoded in inserts.items() if encoded]
        if parts:
            batch.replace_wire(native.splice(wire, parts))
        return written

    def _failed(self, what: str, span_name: str | int) -> None:
        self.failures += 1
        if self.failures == 1 or self.failures % 10_000 == 0:  # log the first, then rarely
            self.log.exception(what, extra={"kv": {"span": span_name, "failures": self.failures}})

    def _normalise(self, attrs: dict[str, Scalar], span: SpanFacts, scope_name: str) -> Result | None:
        """The normaliser's answer; a span it cannot handle passes on as it came, never failing
        the batch (nothing is written to a span before its answer is complete)."""
        try:
            return self.normaliser.span(attrs, span, scope_name)
        except Exception:
            self._failed("a span could not be normalised; passed on unchanged", span.name)
            return None

    def _apply(self, trace_id: bytes, result: Result, sessions: BatchSessions, out: list[bytes]) -> int:
        """Encode one GenAI span's new attributes into `out` and note its session."""
        sessions.genai_trace(trace_id)
        if result.session is not None:
            sessions.offer(trace_id, *result.session)
        encode = self.encoder.encode
        out.extend([encode(key, value) for key, value in result.writes.items()])
        return len(result.writes)

    def _assign_sessions(self, sessions: BatchSessions, trace_ids: list[bytes], settled: set[int],
                         inserts: dict[int, list[bytes]]) -> int:
        """Give every span of a GenAI trace its trace's session id, where it has none."""
        resolved = sessions.resolve()
        entries: dict[bytes, bytes | None] = {}  # trace id → its encoded session attribute (None: none)
        written = 0
        for index, trace_id in enumerate(trace_ids):
            if index in settled:
                continue
            entry = entries.get(trace_id, b"")
            if entry == b"":
                entry = entries[trace_id] = self._session_entry(trace_id, resolved, sessions)
            if entry is not None:
                inserts.setdefault(index, []).append(entry)
                written += 1
        return written

    def _session_entry(self, trace_id: bytes, resolved: dict[bytes, str], sessions: BatchSessions) -> bytes | None:
        session = resolved.get(trace_id)
        if session is None and trace_id not in sessions.best:
            remembered = self.memory.get(trace_id)  # a GenAI trace seen in an earlier batch
            session = remembered[1] if remembered else None
        return self.encoder.encode(A.CONVERSATION, session) if session else None

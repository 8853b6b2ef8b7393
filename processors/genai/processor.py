"""The `genai` processor's batch walk: add canonical GenAI attributes, resolve sessions."""
from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.catalogue import price_book
from pipeline.component import Consumer, Processor, Settings
from pipeline.pdata.batch import Batch
from pipeline.pdata.traces import Traces
from pipeline.telemetry import metrics
from processors.genai import aliases as A
from processors.genai.config import GenAIConfig
from processors.genai.normalise import Normaliser, Result
from processors.genai.session import BatchSessions, TraceMemory
from processors.genai.values import Encoder, pick

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
        self.fallback_priority = len(A.SESSION_KEYS)
        self.failures = 0

    async def consume(self, batch: Batch) -> None:
        if isinstance(batch, Traces) and self.process(batch.message):
            batch.mark_changed()
        await self.next.consume(batch)

    def process(self, message: ExportTraceServiceRequest) -> int:
        """Add the canonical attributes to every span of an ExportTraceServiceRequest in place;
        returns how many attributes were written (0: the message is untouched)."""
        sessions = BatchSessions(self.memory, self.fallback_priority, self.config.session_from_trace)
        lacking: list[tuple[bytes, Span]] = []  # spans without gen_ai.conversation.id, by trace
        written = 0
        wanted = A.WANTED_KEYS
        for resource_spans in message.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                scope_name = scope_spans.scope.name
                for span in scope_spans.spans:
                    attrs = pick(span, wanted)
                    result = self._normalise(attrs, span, scope_name) if attrs or scope_name in A.AGENTS_SCOPES \
                        else None
                    trace_id = span.trace_id
                    if result is not None:
                        written += self._apply(span, trace_id, result, sessions)
                    if result is None or A.CONVERSATION not in attrs:
                        lacking.append((trace_id, span))
        return written + self._assign_sessions(sessions, lacking)

    def _normalise(self, attrs: dict[str, Any], span: Span, scope_name: str) -> Result | None:
        """The normaliser's answer; a span it cannot handle passes on as it came, never failing
        the batch (nothing is written to a span before its answer is complete)."""
        try:
            return self.normaliser.span(attrs, span, scope_name)
        except Exception:
            self.failures += 1
            if self.failures == 1 or self.failures % 10_000 == 0:  # log the first, then rarely
                self.log.exception("a span could not be normalised; passed on unchanged",
                                   extra={"kv": {"span": span.name, "failures": self.failures}})
            return None

    def _apply(self, span: Span, trace_id: bytes, result: Result, sessions: BatchSessions) -> int:
        """Write one GenAI span's new attributes (one merge of encoded bytes) and note its session."""
        sessions.genai_trace(trace_id)
        if result.session is not None:
            sessions.offer(trace_id, *result.session)
        if not result.writes:
            return 0
        encode = self.encoder.encode
        span.MergeFromString(b"".join([encode(key, value) for key, value in result.writes.items()]))
        return len(result.writes)

    def _assign_sessions(self, sessions: BatchSessions, lacking: list[tuple[bytes, Span]]) -> int:
        """Give every span of a GenAI trace its trace's session id, where it has none."""
        resolved = sessions.resolve()
        entries: dict[bytes, bytes | None] = {}  # trace id → its encoded session attribute (None: none)
        written = 0
        for trace_id, span in lacking:
            if trace_id not in entries:
                entries[trace_id] = self._session_entry(trace_id, resolved, sessions)
            entry = entries[trace_id]
            if entry is not None:
                span.MergeFromString(entry)
                written += 1
        return written

    def _session_entry(self, trace_id: bytes, resolved: dict[bytes, str], sessions: BatchSessions) -> bytes | None:
        session = resolved.get(trace_id)
        if session is None and trace_id not in sessions.best:
            remembered = self.memory.get(trace_id)  # a GenAI trace seen in an earlier batch
            session = remembered[1] if remembered else None
        return self.encoder.encode(A.CONVERSATION, session) if session else None

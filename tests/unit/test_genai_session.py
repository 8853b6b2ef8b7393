"""A trace whose root span (the one naming the session) reaches the `genai` processor in a later
export request than its children, as a BatchSpanProcessor sends it when the children end first.

The processor streams: the children's batch has gone on (and is stored) before the root comes,
so the children keep the trace-id fallback, which is the marker the stores' session summaries
fold by (pipeline/clickhouse/sessions.py; tests/integration/test_explorer_summary.py checks the
explorer's totals). What the processor itself promises is tested here: the root gets its own
session, the remembered answer is upgraded, and every later span of that trace gets the root's
session, not the fallback.
"""
from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.pdata.traces import Traces
from processors.genai import GenAIConfig, GenAIProcessor
from processors.genai import aliases as A
from processors.genai.session import TraceMemory
from testkit.trigger_helpers import value

TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
ROOT_ID, CHAT_ID, TOOL_ID, HTTP_ID = (bytes([n]) * 8 for n in (1, 2, 3, 4))


class Sink:
    async def consume(self, batch: object) -> None:
        pass


def make_processor() -> GenAIProcessor:
    settings = Settings.make(Kind.PROCESSOR, ComponentID("genai"), Signal.TRACES)
    return GenAIProcessor(settings, GenAIConfig(), Sink())  # type: ignore[arg-type]


def span(name: str, span_id: bytes, parent: bytes, attrs: dict[str, object]) -> Span:
    result = Span(trace_id=TRACE, span_id=span_id, parent_span_id=parent, name=name)
    for key, val in attrs.items():
        result.attributes.add(key=key, value=value(val))
    return result


def sessions_after(proc: GenAIProcessor, *spans: Span) -> dict[str, str | None]:
    """Run one export request through the processor; span name → its gen_ai.conversation.id."""
    message = ExportTraceServiceRequest()
    message.resource_spans.add().scope_spans.add().spans.extend(spans)
    batch = Traces.from_message(message)
    proc.process(batch)
    out = batch.message.resource_spans[0].scope_spans[0].spans
    return {s.name: next((kv.value.string_value for kv in s.attributes if kv.key == A.CONVERSATION), None)
            for s in out}


CHAT = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"}
TOOL = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather"}
ROOT = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "weather_agent", "session.id": "sess-root"}


def test_children_before_their_root_then_the_root_names_the_session() -> None:
    proc = make_processor()
    first = sessions_after(proc, span("chat", CHAT_ID, ROOT_ID, CHAT), span("tool", TOOL_ID, ROOT_ID, TOOL))
    assert first == {"chat": TRACE.hex(), "tool": TRACE.hex()}  # the fallback, the readers' fold marker
    second = sessions_after(proc, span("invoke_agent", ROOT_ID, b"", ROOT))
    assert second == {"invoke_agent": "sess-root"}
    remembered = proc.memory.get(TRACE)
    assert remembered is not None and remembered[1] == "sess-root"  # upgraded from the fallback
    third = sessions_after(proc, span("chat 2", CHAT_ID, ROOT_ID, CHAT),
                           span("GET", HTTP_ID, CHAT_ID, {"http.request.method": "GET"}))
    assert third == {"chat 2": "sess-root", "GET": "sess-root"}


def test_a_fallback_never_replaces_a_remembered_session() -> None:
    proc = make_processor()
    sessions_after(proc, span("invoke_agent", ROOT_ID, b"", ROOT))
    assert sessions_after(proc, span("chat", CHAT_ID, ROOT_ID, CHAT)) == {"chat": "sess-root"}


def test_the_memory_is_bounded_oldest_forgotten_first() -> None:
    memory = TraceMemory(max_traces=2)
    for n in range(3):
        memory.put(bytes([n]) * 16, (0, f"s{n}"))
    assert len(memory) == 2 and memory.get(bytes([0]) * 16) is None and memory.get(bytes([2]) * 16) == (0, "s2")

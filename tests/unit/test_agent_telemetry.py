"""The agent library's setup: attributes on every span, sessions, the agent and tool decorators,
the live-span filter, the OTLP endpoint rules, and the decision feed's reading of the stream.
Spans come from the real OpenTelemetry SDK into its in-memory exporter."""
from __future__ import annotations

from typing import Any, Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sutazai_agent import DecisionFeed, configure, instrument_agent, session, tool
from sutazai_agent.feed import SseEvent, sse_events
from sutazai_agent.telemetry import LiveSpans, _http_url


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    yield memory
    from sutazai_agent import current
    agent = current()
    if agent is not None:
        agent.shutdown()


def setup(memory: InMemorySpanExporter, **options: Any) -> Any:
    return configure(exporter=memory, set_global=False, decisions=False, instrument=False, live_spans=False,
                     **options)


def finished(memory: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    from sutazai_agent import current
    agent = current()
    assert agent is not None
    agent.provider.force_flush()
    first: dict[str, ReadableSpan] = {}
    for span in memory.get_finished_spans():
        first.setdefault(span.name, span)
    return first


def test_every_span_carries_the_service_agent_and_session(exporter) -> None:
    agent = setup(exporter, service_name="planner", agent_name="planner", agent_id="planner-7")
    assert configure() is agent  # idempotent
    tracer = agent.tracer()
    with session("conversation-42"):
        with tracer.start_as_current_span("chat llama3"):
            pass
        with tracer.start_as_current_span("own", attributes={"gen_ai.conversation.id": "its-own"}):
            pass
    with tracer.start_as_current_span("outside"):
        pass
    spans = finished(exporter)
    chat = spans["chat llama3"]
    assert chat.resource.attributes["service.name"] == "planner"
    assert (chat.attributes["gen_ai.agent.name"], chat.attributes["gen_ai.agent.id"]) == ("planner", "planner-7")
    assert chat.attributes["gen_ai.conversation.id"] == "conversation-42"
    assert spans["own"].attributes["gen_ai.conversation.id"] == "its-own"
    assert "gen_ai.conversation.id" not in spans["outside"].attributes


def test_instrument_agent_traces_the_agent_its_methods_and_tools(exporter) -> None:
    @tool("get_weather")
    def get_weather(city: str) -> str:
        return f"sunny in {city}"

    @instrument_agent(trace_all=True, cost_tracking=False, session_replay=False, exporter=exporter,
                      set_global=False, decisions=False, live_spans=False, service_name="weather")
    class WeatherAgent:
        def run(self, city: str) -> str:
            return self.plan(city)

        def plan(self, city: str) -> str:
            return get_weather(city)

        def fail(self) -> None:
            raise ValueError("no city")

    agent = WeatherAgent()
    assert agent.run("Lisbon") == "sunny in Lisbon"
    with pytest.raises(ValueError):
        agent.fail()
    spans = finished(exporter)
    root = spans["invoke_agent WeatherAgent"]
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert spans["WeatherAgent.plan"].parent.span_id == root.context.span_id
    weather = spans["execute_tool get_weather"]
    assert (weather.attributes["gen_ai.operation.name"], weather.attributes["gen_ai.tool.name"]) == \
        ("execute_tool", "get_weather")
    assert weather.parent.span_id == spans["WeatherAgent.plan"].context.span_id
    failed = [s for s in exporter.get_finished_spans() if s.status.status_code.name == "ERROR"]
    assert [(s.name, s.attributes["error.type"]) for s in failed] == [("invoke_agent WeatherAgent", "ValueError")]


class Recording(SpanProcessor):
    def __init__(self) -> None:
        self.started: list[str] = []
        self.ended: list[str] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started.append(span.name)

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span.name)


def test_live_spans_are_only_agent_tool_and_model_call_spans() -> None:
    inner = Recording()
    provider = TracerProvider()
    provider.add_span_processor(LiveSpans(inner))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("invoke_agent a", attributes={"gen_ai.operation.name": "invoke_agent"}):
        with tracer.start_as_current_span("chat m", attributes={"gen_ai.operation.name": "chat"}):
            pass
        with tracer.start_as_current_span("execute_tool t", attributes={"gen_ai.operation.name": "execute_tool"}):
            pass
        with tracer.start_as_current_span("GET /weather"):
            pass
    assert inner.started == ["invoke_agent a", "chat m", "execute_tool t"]
    assert inner.ended == ["chat m", "execute_tool t", "invoke_agent a"]


def test_the_otlp_http_endpoint_rules(monkeypatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert _http_url("http://daemon:4318", "/v1/traces", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == \
        "http://daemon:4318/v1/traces"
    assert _http_url("http://daemon:4318/v1/traces", "/v1/traces", "X") == "http://daemon:4318/v1/traces"
    assert _http_url(None, "/v1/logs", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") == "http://localhost:4318/v1/logs"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://elsewhere:4318")
    assert _http_url(None, "/v1/traces", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") is None  # the exporter reads it


def test_server_sent_events_are_read_as_the_stream_writes_them() -> None:
    lines = ["retry: 1000", "", "id: r-1", "event: snapshot", 'data: {"breakers": {}}', "", ": heartbeat", "",
             "id: r-2", "event: decision", "data: {", 'data: "a": 1}', "", "event: decision", ""]
    assert list(sse_events(lines)) == [SseEvent("r-1", "snapshot", '{"breakers": {}}'),
                                       SseEvent("r-2", "decision", '{\n"a": 1}')]


def test_a_snapshot_replaces_what_the_feed_held_and_keeps_only_live_throttles() -> None:
    feed = DecisionFeed("http://127.0.0.1:10205/")
    assert feed.url == "http://127.0.0.1:10205/debug/decisions/stream"
    feed.apply_snapshot({"breakers": {"database": {"state": "open", "tier": 1, "fallback": "cache_only"}},
                         "throttles": {"service=a": {"rate_per_minute": 60, "burst_per_second": 1},
                                       "service=b": {"rate_per_minute": None, "burst_per_second": None}}})
    assert feed.breaker("database")["fallback"] == "cache_only" and feed.breaker("ollama_model") is None
    assert feed.throttle("service=a") and feed.throttle("service=b") is None
    seen: list[tuple[str, str]] = []
    feed.on_decision(lambda kind, target, state, doc: seen.append((kind, target)))
    feed.apply_decision({"action": "breaker_close", "target": "database", "reason": "recovered",
                         "state": {"state": "closed", "tier": 0, "fallback": None}})
    feed.apply_decision({"action": "rollback", "target": {"service": "a", "version": "2"}, "state": {"phase": "x"}})
    assert seen == [("breaker", "database")] and feed.breaker("database")["state"] == "closed"

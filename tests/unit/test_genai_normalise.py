"""The `genai` processor on recorded attribute sets of each instrumentation family.

Each family's spans are built from its published attribute names (OpenTelemetry GenAI
current and old names, OpenInference, OpenLLMetry/Traceloop, Langfuse, AgentOps v4,
OpenAI Agents SDK bridges, Google ADK), put in a real ExportTraceServiceRequest, run
through the processor's `consume`, and read back from the re-serialised wire bytes.
"""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from genai_prices import Usage as PriceUsage
from genai_prices import calc_price, data_snapshot
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from pydantic import ValidationError

from pipeline.catalogue import PriceBook, context_window, price_book
from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.pdata.traces import Traces
from pipeline.telemetry import metrics
from processors.genai import GenAIConfig, GenAIProcessor
from processors.genai import aliases as A
from processors.genai.values import Encoder
from testkit.trigger_helpers import value

TRACE_A, TRACE_B = bytes.fromhex("0af7651916cd43dd8448eb211c80319c"), bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")


# -- building requests and reading results ---------------------------------------------------------
# `value` (from testkit/trigger_helpers.py) makes a Python value an OTLP AnyValue.
def span(name: str, attrs: dict[str, object], trace: bytes = TRACE_A, error: bool = False,
         exception: str | None = None) -> Span:
    result = Span(trace_id=trace, span_id=bytes([len(name) % 250 + 1]) * 8, name=name)
    result.attributes.extend(KeyValue(key=k, value=value(v)) for k, v in attrs.items())
    if error:
        result.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="failed"))
    if exception:
        event = result.events.add(name="exception")
        event.attributes.add(key="exception.type", value=AnyValue(string_value=exception))
    return result


def request(*spans: Span, scope: str = "test.instrumentation") -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    scope_spans = message.resource_spans.add().scope_spans.add()
    scope_spans.scope.name = scope
    scope_spans.spans.extend(spans)
    return message


class Sink:
    """The next consumer: keeps what it is given."""

    def __init__(self) -> None:
        self.batches: list[Traces] = []

    async def consume(self, batch: Traces) -> None:
        self.batches.append(batch)


def processor(**config: Any) -> tuple[GenAIProcessor, Sink]:
    sink = Sink()
    settings = Settings.make(Kind.PROCESSOR, ComponentID("genai"), Signal.TRACES)
    return GenAIProcessor(settings, GenAIConfig(**config), sink), sink


def run(message: ExportTraceServiceRequest, proc: GenAIProcessor | None = None, **config: Any) -> list[dict[str, Any]]:
    """Send the request's wire bytes through the processor; return each span's attributes as
    read back from the bytes that leave it (key → python value, in order)."""
    proc, sink = (proc, proc.next) if proc else processor(**config)
    asyncio.run(proc.consume(Traces.from_wire(message.SerializeToString())))
    out = ExportTraceServiceRequest.FromString(sink.batches[-1].wire())
    return [attributes(s) for rs in out.resource_spans for ss in rs.scope_spans for s in ss.spans]


def attributes(s: Span) -> dict[str, Any]:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in s.attributes}


def assert_originals_kept(before: ExportTraceServiceRequest, after: list[dict[str, Any]]) -> None:
    """Every original attribute is still there, first, with its value and in its order."""
    spans = [s for rs in before.resource_spans for ss in rs.scope_spans for s in ss.spans]
    for original, result in zip(spans, after, strict=True):
        kept = attributes(original)
        assert list(result.items())[:len(kept)] == list(kept.items())


def genai_prices_total(model: str, provider: str, **usage: int) -> float:
    return float(calc_price(PriceUsage(**usage), model, provider_id=provider).total_price)


# -- OpenTelemetry GenAI, current and old names ------------------------------------------------------
def test_current_otel_names_are_kept_and_only_missing_keys_added() -> None:
    chat = span("chat gpt-4o", {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
                                "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300,
                                "gen_ai.usage.cache_read.input_tokens": 1000})
    message = request(chat)
    [out] = run(message)
    assert_originals_kept(message, [out])
    added = set(out) - set(attributes(chat))
    assert added == {A.COST, A.CONVERSATION}
    assert out[A.CONVERSATION] == TRACE_A.hex()
    expected = genai_prices_total("gpt-4o-2024-08-06", "openai", input_tokens=1200, cache_read_tokens=1000,
                                  output_tokens=300)
    assert out[A.COST] == pytest.approx(expected, rel=1e-9)


def test_old_otel_names_map_to_the_current_ones() -> None:
    chat = span("openai.chat", {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
                                "gen_ai.usage.prompt_tokens": 800, "gen_ai.usage.completion_tokens": 90,
                                "gen_ai.usage.cache_read_input_tokens": 512})
    message = request(chat)
    [out] = run(message)
    assert_originals_kept(message, [out])
    assert out[A.PROVIDER] == "openai"
    assert out[A.INPUT_TOKENS] == 800  # inclusive already: cache is part of the prompt count
    assert out[A.OUTPUT_TOKENS] == 90
    assert out[A.CACHE_READ] == 512
    assert out[A.OPERATION] == "chat"  # model + tokens, no stated role: an inference call
    assert out["gen_ai.system"] == "openai" and out["gen_ai.usage.prompt_tokens"] == 800


def test_existing_canonical_value_wins_over_an_alias() -> None:
    chat = span("chat", {"gen_ai.usage.input_tokens": 50, "gen_ai.usage.prompt_tokens": 999,
                         "gen_ai.provider.name": "anthropic", "gen_ai.system": "openai",
                         "gen_ai.request.model": "claude-3-5-haiku-latest"})
    [out] = run(request(chat))
    assert out[A.INPUT_TOKENS] == 50 and out[A.PROVIDER] == "anthropic"
    assert list(out).count(A.INPUT_TOKENS) == 1 and list(out).count(A.PROVIDER) == 1


# -- OpenInference (Phoenix) ------------------------------------------------------------------------
OPENINFERENCE_LLM = {
    "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o", "llm.provider": "azure", "llm.system": "openai",
    "llm.token_count.prompt": 2000, "llm.token_count.completion": 500, "llm.token_count.total": 2500,
    "llm.token_count.prompt_details.cache_read": 1500, "llm.token_count.prompt_details.cache_write": 100,
    "llm.token_count.completion_details.reasoning": 200, "session.id": "oi-session", "user.id": "u-7",
    "llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": "hi",
}


def test_openinference_llm_tool_agent_and_embedding_spans() -> None:
    message = request(
        span("ChatCompletion", OPENINFERENCE_LLM),
        span("get_weather", {"openinference.span.kind": "TOOL", "tool.name": "get_weather", "tool.id": "call_62136355",
                             "session.id": "oi-session"}),
        span("researcher", {"openinference.span.kind": "AGENT", "agent.name": "researcher", "session.id": "oi-session"}),
        span("embed", {"openinference.span.kind": "EMBEDDING", "embedding.model_name": "text-embedding-3-small",
                       "llm.token_count.prompt": 12}),
    )
    llm, tool, agent, embedding = run(message)
    assert_originals_kept(message, [llm, tool, agent, embedding])
    assert llm[A.OPERATION] == "chat" and llm[A.PROVIDER] == "azure.ai.openai"
    assert llm[A.REQUEST_MODEL] == llm[A.RESPONSE_MODEL] == "gpt-4o"
    assert (llm[A.INPUT_TOKENS], llm[A.OUTPUT_TOKENS]) == (2000, 500)  # inclusive: taken as they are
    assert (llm[A.CACHE_READ], llm[A.CACHE_CREATION], llm[A.REASONING]) == (1500, 100, 200)
    assert llm[A.CONVERSATION] == "oi-session"
    assert (tool[A.OPERATION], tool[A.TOOL_NAME], tool[A.TOOL_CALL_ID]) == ("execute_tool", "get_weather",
                                                                             "call_62136355")
    assert (agent[A.OPERATION], agent[A.AGENT_NAME]) == ("invoke_agent", "researcher")
    assert (embedding[A.OPERATION], embedding[A.REQUEST_MODEL]) == ("embeddings", "text-embedding-3-small")
    assert embedding[A.CONVERSATION] == "oi-session"  # same trace: the trace's session


def test_openinference_cost_on_the_span_wins() -> None:
    [out] = run(request(span("llm", {**OPENINFERENCE_LLM, "llm.cost.total": 0.0066})))
    assert out[A.COST] == pytest.approx(0.0066)


def test_openinference_input_derived_from_total_when_prompt_is_missing() -> None:
    [out] = run(request(span("llm", {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o",
                                     "llm.token_count.completion": 40, "llm.token_count.total": 140})))
    assert (out[A.INPUT_TOKENS], out[A.OUTPUT_TOKENS]) == (100, 40)


# -- OpenLLMetry / Traceloop --------------------------------------------------------------------------
def test_openllmetry_spans() -> None:
    props = {"traceloop.association.properties.session_id": "tl-session"}
    message = request(
        span("anthropic.chat", {"gen_ai.system": "Anthropic", "llm.request.type": "chat",
                                "gen_ai.request.model": "claude-3-5-haiku-latest",
                                "gen_ai.response.model": "claude-3-5-haiku-20241022",
                                # OpenLLMetry folds Anthropic's cache counts into the prompt count
                                "gen_ai.usage.prompt_tokens": 1300, "gen_ai.usage.completion_tokens": 70,
                                "llm.usage.total_tokens": 1370, "gen_ai.usage.cache_read_input_tokens": 1000,
                                "gen_ai.usage.cache_creation_input_tokens": 200, **props}),
        span("search.tool", {"traceloop.span.kind": "tool", "traceloop.entity.name": "search", **props}),
        span("planner.agent", {"traceloop.span.kind": "agent", "traceloop.entity.name": "planner", **props}),
        span("trip.workflow", {"traceloop.span.kind": "workflow", "traceloop.entity.name": "trip",
                               "traceloop.workflow.name": "trip"}),
        span("openai.completion", {"gen_ai.system": "openai", "llm.request.type": "completion",
                                   "gen_ai.request.model": "gpt-3.5-turbo-instruct",
                                   "gen_ai.usage.completion_tokens": 30, "llm.usage.total_tokens": 130}),
    )
    chat, tool, agent, workflow, completion = run(message)
    assert_originals_kept(message, [chat, tool, agent, workflow, completion])
    assert (chat[A.PROVIDER], chat[A.OPERATION]) == ("anthropic", "chat")
    assert (chat[A.INPUT_TOKENS], chat[A.CACHE_READ], chat[A.CACHE_CREATION]) == (1300, 1000, 200)
    assert (tool[A.OPERATION], tool[A.TOOL_NAME]) == ("execute_tool", "search")
    assert (agent[A.OPERATION], agent[A.AGENT_NAME]) == ("invoke_agent", "planner")
    assert workflow[A.OPERATION] == "invoke_workflow"
    assert (completion[A.OPERATION], completion[A.INPUT_TOKENS]) == ("text_completion", 100)  # total − output
    assert {s[A.CONVERSATION] for s in (chat, tool, agent, workflow, completion)} == {"tl-session"}
    expected = genai_prices_total("claude-3-5-haiku-20241022", "anthropic", input_tokens=1300,
                                  cache_read_tokens=1000, cache_write_tokens=200, output_tokens=70)
    assert chat[A.COST] == pytest.approx(expected, rel=1e-9)


# -- Langfuse ----------------------------------------------------------------------------------------
def test_langfuse_disjoint_buckets_are_summed_into_inclusive_counts() -> None:
    usage = '{"input": 600, "input_cached_tokens": 400, "output": 80, "output_reasoning_tokens": 20, "total": 1100}'
    message = request(
        span("llm-call", {"langfuse.observation.type": "generation", "langfuse.observation.model.name": "o3-mini",
                          "langfuse.observation.usage_details": usage, "langfuse.session.id": "lf-session"}),
        span("lookup", {"langfuse.observation.type": "tool"}),
        span("triage", {"langfuse.observation.type": "agent"}),
    )
    generation, tool, agent = run(message)
    assert_originals_kept(message, [generation, tool, agent])
    # Langfuse's model.name is the model the answer named: the response model (none requested is sent)
    assert generation[A.OPERATION] == "chat" and generation[A.RESPONSE_MODEL] == "o3-mini"
    assert A.REQUEST_MODEL not in generation
    assert (generation[A.INPUT_TOKENS], generation[A.OUTPUT_TOKENS]) == (1000, 100)
    assert (generation[A.CACHE_READ], generation[A.REASONING]) == (400, 20)
    assert (tool[A.OPERATION], tool[A.TOOL_NAME]) == ("execute_tool", "lookup")
    assert (agent[A.OPERATION], agent[A.AGENT_NAME]) == ("invoke_agent", "triage")
    assert {s[A.CONVERSATION] for s in (generation, tool, agent)} == {"lf-session"}


def test_langfuse_anthropic_usage_and_span_cost() -> None:
    usage = '{"input": 100, "cache_read_input_tokens": 900, "cache_creation_input_tokens": 50, "output": 10}'
    [out] = run(request(span("claude", {
        "langfuse.observation.type": "generation", "langfuse.observation.model.name": "claude-3-5-haiku-latest",
        "langfuse.observation.usage_details": usage,
        "langfuse.observation.cost_details": '{"input": 0.001, "output": 0.002, "total": 0.0031}'})))
    assert (out[A.INPUT_TOKENS], out[A.CACHE_READ], out[A.CACHE_CREATION]) == (1050, 900, 50)
    assert out[A.COST] == pytest.approx(0.0031)  # Langfuse's own total wins over ours


def test_langfuse_error_level_sets_error_type() -> None:
    [out] = run(request(span("gen", {"langfuse.observation.type": "generation", "langfuse.observation.level": "ERROR"})))
    assert out[A.ERROR_TYPE] == "_OTHER"


# -- AgentOps v4 -------------------------------------------------------------------------------------
def test_agentops_spans_and_raw_anthropic_input() -> None:
    message = request(
        span("anthropic.messages.create", {"agentops.span.kind": "llm", "gen_ai.system": "anthropic",
                                           "gen_ai.request.model": "claude-3-5-haiku-latest",
                                           # raw Anthropic usage: input_tokens excludes the cache
                                           "gen_ai.usage.prompt_tokens": 100, "gen_ai.usage.completion_tokens": 40,
                                           "gen_ai.usage.cache_read_input_tokens": 50,
                                           "gen_ai.usage.cache_creation_input_tokens": 25}),
        span("researcher.agent", {"agentops.span.kind": "agent", "agent.id": "ag-1", "agent.name": "researcher"}),
        span("search.tool", {"agentops.span.kind": "tool", "tool.name": "search"}),
        scope="agentops.instrumentation.anthropic")
    llm, agent, tool = run(message)
    assert_originals_kept(message, [llm, agent, tool])
    assert (llm[A.OPERATION], llm[A.PROVIDER]) == ("chat", "anthropic")
    assert (llm[A.INPUT_TOKENS], llm[A.CACHE_READ], llm[A.CACHE_CREATION]) == (175, 50, 25)
    assert (agent[A.OPERATION], agent[A.AGENT_ID], agent[A.AGENT_NAME]) == ("invoke_agent", "ag-1", "researcher")
    assert (tool[A.OPERATION], tool[A.TOOL_NAME]) == ("execute_tool", "search")
    assert {s[A.CONVERSATION] for s in (llm, agent, tool)} == {TRACE_A.hex()}  # a session is a trace


def test_input_smaller_than_its_own_cache_is_taken_as_exclusive() -> None:
    [out] = run(request(span("chat", {"gen_ai.system": "anthropic", "gen_ai.request.model": "claude-3-5-haiku-latest",
                                      "gen_ai.usage.prompt_tokens": 20, "gen_ai.usage.cache_read_input_tokens": 3000})))
    assert out[A.INPUT_TOKENS] == 3020


# -- OpenAI Agents SDK bridges -----------------------------------------------------------------------
def test_openai_agents_logfire_bridge() -> None:
    message = request(
        span("OpenAI Agents trace: {name}", {"logfire.msg_template": "OpenAI Agents trace: {name}",
                                             "name": "Agent workflow", "group_id": "thread-42"}),
        span("Agent run: {name!r}", {"logfire.msg_template": "Agent run: {name!r}", "name": "planner",
                                     "gen_ai.system": "openai", "handoffs": "[]"}),
        span("Responses API with {gen_ai.request.model!r}", {
            "logfire.msg_template": "Responses API with {gen_ai.request.model!r}", "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 83, "gen_ai.usage.output_tokens": 11}),
        span("Function: {name}", {"logfire.msg_template": "Function: {name}", "name": "random_number"}),
        span("Handoff: {from_agent} → {to_agent}", {"logfire.msg_template": "Handoff: {from_agent} → {to_agent}",
                                                    "from_agent": "planner", "to_agent": "coder"}),
        scope="logfire")
    trace, agent, response, function, handoff = run(message)
    assert_originals_kept(message, [trace, agent, response, function, handoff])
    assert (agent[A.OPERATION], agent[A.AGENT_NAME]) == ("invoke_agent", "planner")
    assert A.PROVIDER not in agent  # logfire's gen_ai.system there names the agent's model vendor: no model call
    assert (response[A.OPERATION], response[A.INPUT_TOKENS], response[A.PROVIDER]) == ("chat", 83, "openai")
    assert (function[A.OPERATION], function[A.TOOL_NAME]) == ("execute_tool", "random_number")
    assert A.OPERATION not in handoff  # no GenAI operation for a handoff
    assert {s[A.CONVERSATION] for s in (trace, agent, response, function, handoff)} == {"thread-42"}


def test_openai_agents_otel_bridge_and_group_id_names() -> None:
    for group_key in ("trace.group_id", "group.id", "agent.group_id"):
        message = request(
            span("workflow: Support", {"agent.workflow.name": "Support", group_key: "conv-9"}),
            span("agent: triage", {"agent.name": "triage"}),
            span("execute_tool lookup_order", {"gen_ai.tool.name": "lookup_order"}),
            span("guardrail: pii", {"agent.guardrail.triggered": False}),
            scope="openai.agents")
        root, agent, tool, guardrail = run(message)
        assert (agent[A.OPERATION], agent[A.AGENT_NAME]) == ("invoke_agent", "triage")
        assert tool[A.OPERATION] == "execute_tool"
        assert A.OPERATION not in guardrail
        assert {s[A.CONVERSATION] for s in (root, agent, tool, guardrail)} == {"conv-9"}, group_key


# -- Google ADK ----------------------------------------------------------------------------------------
def test_google_adk_spans() -> None:
    message = request(
        span("invoke_agent weather_agent", {"gen_ai.operation.name": "invoke_agent",
                                            "gen_ai.agent.name": "weather_agent",
                                            "gen_ai.conversation.id": "adk-session-1"}),
        span("call_llm", {"gen_ai.system": "gcp.vertex.agent", "gen_ai.request.model": "gemini-2.0-flash",
                          "gcp.vertex.agent.invocation_id": "e-123", "gcp.vertex.agent.session_id": "adk-session-1",
                          "gcp.vertex.agent.event_id": "ev-1", "gen_ai.usage.input_tokens": 310,
                          "gen_ai.usage.output_tokens": 25}),
        span("execute_tool get_weather", {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather",
                                          "gen_ai.tool.call.id": "adk-call-1"}),
        scope="gcp.vertex.agent")
    agent, llm, tool = run(message)
    assert_originals_kept(message, [agent, llm, tool])
    assert llm[A.OPERATION] == "generate_content"
    assert llm[A.PROVIDER] == "gcp.gen_ai"  # not gcp.vertex.agent: that is the framework
    assert llm["gen_ai.system"] == "gcp.vertex.agent"
    assert llm[A.CONVERSATION] == tool[A.CONVERSATION] == agent[A.CONVERSATION] == "adk-session-1"
    assert list(agent).count(A.CONVERSATION) == 1


# -- sessions -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("present, expected", [
    ({"session.id": "oi", "langfuse.session.id": "lf", "gcp.vertex.agent.session_id": "adk"}, "oi"),
    ({"langfuse.session.id": "lf", "traceloop.association.properties.session_id": "tl"}, "lf"),
    ({"traceloop.association.properties.session_id": "tl", "group_id": "grp"}, "tl"),
    ({"trace.group_id": "grp", "gcp.vertex.agent.session_id": "adk"}, "grp"),
    ({"gcp.vertex.agent.session_id": "adk"}, "adk"),
    ({}, TRACE_A.hex()),
])
def test_session_resolution_order(present: dict[str, str], expected: str) -> None:
    """Each key on a span of its own, last-priority first: the earliest key in the order of
    docs/genai-attributes.md#session-id wins."""
    spans = [span(f"s{i}", {"gen_ai.operation.name": "chat", key: val})
             for i, (key, val) in enumerate(reversed(list(present.items())))]
    spans.append(span("GET /weather", {"http.request.method": "GET"}))
    results = run(request(*spans, span("chat", {"gen_ai.operation.name": "chat"})))
    assert {s[A.CONVERSATION] for s in results} == {expected}


def test_existing_conversation_id_wins_for_the_whole_trace() -> None:
    results = run(request(span("a", {"session.id": "oi"}), span("b", {"gen_ai.conversation.id": "conv"}),
                          span("GET", {"http.request.method": "GET"})))
    assert [s[A.CONVERSATION] for s in results] == ["conv", "conv", "conv"]


def test_traces_without_genai_spans_are_untouched() -> None:
    message = request(span("GET /", {"http.request.method": "GET"}, trace=TRACE_B),
                      span("SELECT", {"db.system": "postgresql"}, trace=TRACE_B))
    proc, sink = processor()
    wire = message.SerializeToString()
    asyncio.run(proc.consume(Traces.from_wire(wire)))
    assert sink.batches[0].unchanged and sink.batches[0].wire() == wire


def test_session_from_trace_off_leaves_sessionless_traces_alone() -> None:
    [chat, http] = run(request(span("chat", {"gen_ai.operation.name": "chat"}), span("GET", {"http.url": "x"})),
                       session_from_trace=False)
    assert A.CONVERSATION not in chat and A.CONVERSATION not in http


def test_session_carries_over_to_a_later_batch_of_the_trace() -> None:
    proc, _ = processor()
    run(request(span("chat", {"openinference.span.kind": "LLM", "session.id": "s-1"})), proc)
    [http] = run(request(span("GET", {"http.request.method": "GET"})), proc)
    assert http[A.CONVERSATION] == "s-1"
    [other] = run(request(span("GET", {"http.request.method": "GET"}, trace=TRACE_B)), proc)
    assert A.CONVERSATION not in other


# -- errors, malformed values, sources ----------------------------------------------------------------
def test_malformed_values_never_fail_the_batch() -> None:
    message = request(
        span("lf", {"langfuse.observation.type": "generation", "langfuse.observation.model.name": "gpt-4o",
                    "langfuse.observation.usage_details": '{"input": Infinity, "output": NaN, "total": 1e999}',
                    "langfuse.observation.cost_details": "not json"}),
        span("oi", {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o", "llm.token_count.prompt": "1e400",
                    "llm.token_count.completion": -3, "llm.cost.total": "NaN"}),
        span("strings", {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.prompt_tokens": "120",
                         "gen_ai.usage.completion_tokens": 7.0}),
    )
    lf, oi, strings = run(message)
    assert_originals_kept(message, [lf, oi, strings])
    assert A.INPUT_TOKENS not in lf and A.COST not in lf and A.INPUT_TOKENS not in oi and A.COST not in oi
    assert (strings[A.INPUT_TOKENS], strings[A.OUTPUT_TOKENS]) == (120, 7)  # numbers sent as text or doubles


# -- errors, sources ----------------------------------------------------------------------------------
def test_error_type_from_the_exception_event() -> None:
    chat, tool = run(request(span("chat", {"gen_ai.operation.name": "chat"}, error=True, exception="RateLimitError"),
                             span("tool", {"gen_ai.operation.name": "execute_tool"}, error=True)))
    assert chat[A.ERROR_TYPE] == "RateLimitError" and tool[A.ERROR_TYPE] == "_OTHER"


def test_disabled_source_is_ignored() -> None:
    [out] = run(request(span("llm", OPENINFERENCE_LLM)), enabled_sources=["langfuse", "otel_legacy"])
    assert A.REQUEST_MODEL not in out and A.INPUT_TOKENS not in out and A.OPERATION not in out


def test_unknown_source_name_is_a_config_error() -> None:
    with pytest.raises(ValidationError):
        GenAIConfig(enabled_sources=["phoenix"])


# -- cost ----------------------------------------------------------------------------------------------
def test_cost_matches_genai_prices_including_tiers_and_cache_writes() -> None:
    model, provider = "claude-sonnet-4-5", "anthropic"
    for inputs in (5_000, 250_000):  # the second crosses the 200k-token price tier
        usage = {"input_tokens": inputs, "cache_read_tokens": 3_000, "cache_write_tokens": 1_000,
                 "output_tokens": 700}
        [out] = run(request(span("chat", {
            "gen_ai.provider.name": provider, "gen_ai.request.model": model, "gen_ai.usage.input_tokens": inputs,
            "gen_ai.usage.output_tokens": 700, "gen_ai.usage.cache_read.input_tokens": 3_000,
            "gen_ai.usage.cache_creation.input_tokens": 1_000})))
        assert out[A.COST] == pytest.approx(genai_prices_total(model, provider, **usage), rel=1e-9)


def test_prices_are_looked_up_once_per_model() -> None:
    book = PriceBook()
    for _ in range(100):
        assert book.rates("openai", "gpt-4o") is not None
    assert book.lookups == 1
    proc, _ = processor()
    before = proc.normaliser.book.lookups
    spans = [span(f"c{i}", {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4.1-nano",
                            "gen_ai.usage.input_tokens": i + 1}) for i in range(50)]
    run(request(*spans), proc)
    assert proc.normaliser.book.lookups - before <= 1


def test_cost_already_on_the_span_wins() -> None:
    [out] = run(request(span("chat", {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10,
                                      "gen_ai.usage.cost": 1.5})))
    assert out[A.COST] == 1.5 and list(out).count(A.COST) == 1


def test_override_file_adds_and_corrects_models(tmp_path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("models:\n"
                    "  - model: acme-large\n    input: 1.0\n    output: 2.0\n    cache_read: 0.5\n"
                    "    context_window: 32000\n"
                    "  - model: gpt-4o\n    provider: openai\n    input: 100\n    output: 100\n")
    acme, gpt = run(request(
        span("a", {"gen_ai.request.model": "acme-large", "gen_ai.usage.input_tokens": 1_000_000,
                   "gen_ai.usage.cache_read.input_tokens": 200_000, "gen_ai.usage.output_tokens": 500_000}),
        span("b", {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
                   "gen_ai.usage.input_tokens": 1_000_000})), prices_file=str(path))
    assert acme[A.COST] == pytest.approx(0.8 * 1.0 + 0.2 * 0.5 + 0.5 * 2.0)
    assert gpt[A.COST] == pytest.approx(100.0)
    assert context_window("any", "acme-large", str(path)) == 32000


def test_bad_override_file_is_a_config_error(tmp_path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("models:\n  - model: half\n    input: 1.0\n")
    with pytest.raises(ValidationError, match="both input and output"):
        GenAIConfig(prices_file=str(path))
    with pytest.raises(ValidationError, match="cannot read"):
        GenAIConfig(prices_file=str(tmp_path / "missing.yaml"))


def unpriced(model: str) -> float:
    return metrics.REGISTRY.get_sample_value("agentdbg_genai_unpriced_spans_total", {"model": model}) or 0.0


def test_unknown_model_gets_no_cost_and_is_counted() -> None:
    before = unpriced("mystery-model-9000")
    [out, local] = run(request(
        span("chat", {"gen_ai.request.model": "mystery-model-9000", "gen_ai.usage.input_tokens": 10}),
        span("chat", {"gen_ai.provider.name": "ollama", "gen_ai.request.model": "llama3.1:8b",
                      "gen_ai.usage.input_tokens": 10})))
    assert A.COST not in out and A.COST not in local  # self-hosted is never charged at a host's rate
    assert unpriced("mystery-model-9000") == before + 1


def test_write_cost_off() -> None:
    [out] = run(request(span("chat", {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10})),
                write_cost=False)
    assert A.COST not in out


def test_context_window_comes_from_genai_prices() -> None:
    _, info = data_snapshot.get_snapshot().find_provider_model("gpt-4o", None, "openai", None)
    assert context_window("openai", "gpt-4o") == info.context_window is not None
    assert context_window("gcp.gen_ai", "gemini-2.0-flash") is not None
    assert context_window("openai", "no-such-model") is None
    assert price_book() is price_book()  # one shared cache for the processor and the detectors
    assert info.get_prices(datetime.now(tz=UTC)) is not None


# -- the attribute encoder (hand-written protobuf wire format) -----------------------------------------
@pytest.mark.parametrize("key, val", [("gen_ai.request.model", "gpt-4o"), ("k", "x" * 300), ("k" * 200, 7),
                                      ("gen_ai.usage.input_tokens", 0), ("n", 2**63 - 1), ("n", -5),
                                      ("gen_ai.usage.cost", 0.0031), ("b", True), ("e", "")])
def test_encoded_attribute_equals_the_protobuf_one(key: str, val: object) -> None:
    decoded = Span()
    decoded.MergeFromString(Encoder().encode(key, val))  # type: ignore[arg-type]
    assert list(decoded.attributes) == [KeyValue(key=key, value=value(val))]


# -- attribute sets as the real clients send them (tests/integration/test_clients_*.py found these) --
CLIENT_PRICES = "models:\n  - {model: gpt-4o-mini-2024-07-18, input: 0.15, output: 0.6, cache_read: 0.075}\n"
RAW_OPENAI_USAGE = ('{"completion_tokens": 43, "prompt_tokens": 1300, "total_tokens": 1343,'
                    ' "completion_tokens_details": {"accepted_prediction_tokens": 0, "audio_tokens": 0,'
                    ' "reasoning_tokens": 0, "rejected_prediction_tokens": 0},'
                    ' "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 1024}}')
CACHED_COST = ((1300 - 1024) * 0.15 + 1024 * 0.075 + 43 * 0.6) / 1e6


def client_prices(tmp_path: Any) -> str:
    path = tmp_path / "prices.yaml"
    path.write_text(CLIENT_PRICES)
    return str(path)


def test_langfuse_openai_raw_usage_keeps_the_cache_once_and_the_response_model(tmp_path: Any) -> None:
    generation, embedding, tool = run(request(
        span("OpenAI-generation", {"langfuse.observation.type": "generation",
                                   "langfuse.observation.model.name": "gpt-4o-mini-2024-07-18",
                                   "langfuse.observation.usage_details": RAW_OPENAI_USAGE}),
        span("OpenAI-embedding", {"langfuse.observation.type": "embedding",
                                  "langfuse.observation.model.name": "text-embedding-3-small",
                                  "langfuse.observation.usage_details": '{"input": 24}'}),
        span("get_weather", {"langfuse.observation.type": "tool"}),
        scope="langfuse-sdk"), prices_file=client_prices(tmp_path))
    # prompt_tokens already includes the 1,024 cached: input stays 1,300, the cache is read from the nested details
    assert (generation[A.INPUT_TOKENS], generation[A.CACHE_READ], generation[A.OUTPUT_TOKENS]) == (1300, 1024, 43)
    assert generation[A.REASONING] == 0
    assert generation[A.COST] == pytest.approx(CACHED_COST, rel=1e-12)  # was the uncached price, 25.8 % higher
    assert generation[A.RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18" and A.REQUEST_MODEL not in generation
    assert generation[A.PROVIDER] == embedding[A.PROVIDER] == "openai"  # langfuse.openai's observation names
    assert (embedding[A.OPERATION], embedding[A.INPUT_TOKENS]) == ("embeddings", 24)
    assert A.PROVIDER not in tool and tool[A.TOOL_NAME] == "get_weather"


def test_langfuse_responses_api_usage_shape() -> None:
    usage = ('{"input_tokens": 1500, "input_tokens_details": {"cached_tokens": 1024}, "output_tokens": 49,'
             ' "output_tokens_details": {"reasoning_tokens": 9}, "total_tokens": 1549}')
    (generation,) = run(request(span("OpenAI-generation", {
        "langfuse.observation.type": "generation", "langfuse.observation.usage_details": usage})))
    assert [generation[k] for k in (A.INPUT_TOKENS, A.CACHE_READ, A.OUTPUT_TOKENS, A.REASONING)] == [1500, 1024, 49, 9]


def test_openinference_requested_model_and_decorated_agent_name() -> None:
    llm, embedding, agent, tool = run(request(
        span("ChatCompletion", {"openinference.span.kind": "LLM", "llm.system": "openai",
                                "llm.model_name": "gpt-4o-mini-2024-07-18",
                                "llm.invocation_parameters": '{"model": "gpt-4o-mini", "stream": true}',
                                "llm.token_count.prompt": 1300, "llm.token_count.completion": 43}),
        span("CreateEmbeddings", {"openinference.span.kind": "EMBEDDING", "llm.system": "openai",
                                  "embedding.model_name": "text-embedding-3-small",
                                  "embedding.invocation_parameters": '{"model": "text-embedding-3-small"}',
                                  "llm.token_count.prompt": 24}),
        span("weather_agent", {"openinference.span.kind": "AGENT"}),  # @tracer.agent(name="weather_agent")
        span("get_weather", {"openinference.span.kind": "TOOL", "tool.name": "get_weather"}),
        scope="openinference.instrumentation.openai"))
    assert (llm[A.REQUEST_MODEL], llm[A.RESPONSE_MODEL]) == ("gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert embedding[A.REQUEST_MODEL] == embedding[A.RESPONSE_MODEL] == "text-embedding-3-small"
    assert (agent[A.OPERATION], agent[A.AGENT_NAME]) == ("invoke_agent", "weather_agent")
    assert (tool[A.OPERATION], tool[A.TOOL_NAME]) == ("execute_tool", "get_weather")


def test_agentops_agent_and_tool_names_and_tool_call_id() -> None:
    agent, tool, call = run(request(
        span("weather_agent.agent", {"agentops.span.kind": "agent", "operation.name": "weather_agent"}),
        span("get_weather.tool", {"agentops.span.kind": "tool", "operation.name": "get_weather"}),
        span("tool_call.get_weather", {"tool.call.id": "call_fake0001", "tool.name": "get_weather",
                                       "tool.call.type": "function"}),
        scope="agentops"))
    assert (agent[A.OPERATION], agent[A.AGENT_NAME]) == ("invoke_agent", "weather_agent")
    assert (tool[A.OPERATION], tool[A.TOOL_NAME]) == ("execute_tool", "get_weather")
    assert (call[A.TOOL_CALL_ID], call[A.TOOL_NAME]) == ("call_fake0001", "get_weather")


def test_logfire_gen_ai_system_gives_a_provider_to_model_calls_only() -> None:
    tool, turn, model = run(request(
        span("Function: {name}", {"logfire.msg_template": "Function: {name}", "name": "get_weather",
                                  "gen_ai.system": "openai"}),
        span("Turn {turn} for agent weather_agent", {"logfire.msg_template": "Turn {turn} for agent weather_agent",
                                                     "gen_ai.system": "openai", "name": "turn"}),
        span("Responses API with {gen_ai.request.model!r}", {
            "logfire.msg_template": "Responses API with {gen_ai.request.model!r}", "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.operation.name": "chat"}),
        scope="logfire.openai_agents"))
    assert tool[A.OPERATION] == "execute_tool" and A.PROVIDER not in tool
    assert A.PROVIDER not in turn
    assert model[A.PROVIDER] == "openai"


def test_cost_is_stored_rounded_not_as_float_noise(tmp_path: Any) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("models:\n  - {model: tiny, input: 0.08, output: 0.0}\n")
    assert 3 * (0.08 / 1e6) == 2.4000000000000003e-07  # the product as a float: written "0.00000024000000000000003"
    (priced,) = run(request(span("chat tiny", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "tiny",
                                               "gen_ai.usage.input_tokens": 3, "gen_ai.usage.output_tokens": 0})),
                    prices_file=str(path))
    assert priced[A.COST] == 2.4e-07


def test_price_override_matches_a_litellm_vendor_prefixed_model(tmp_path: Any) -> None:
    path = tmp_path / "prices.yaml"  # prices of our own, unlike the bundled ones: the override must win
    path.write_text("models:\n  - {model: gpt-4o-mini-2024-07-18, input: 1.0, output: 2.0, cache_read: 0.5}\n")
    (adk,) = run(request(span("generate_content openai/gpt-4o-mini-2024-07-18", {
        "gen_ai.operation.name": "generate_content", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "openai/gpt-4o-mini-2024-07-18", "gen_ai.usage.input_tokens": 1300,
        "gen_ai.usage.cache_read.input_tokens": 1024, "gen_ai.usage.output_tokens": 43})),
        prices_file=str(path))
    assert adk[A.COST] == pytest.approx(((1300 - 1024) * 1.0 + 1024 * 0.5 + 43 * 2.0) / 1e6, rel=1e-12)

"""The explorer's JSON API on config/default.yaml (chdb store, triggers, in-process safety),
fed agent-shaped traffic by the OpenTelemetry SDK: every answer is checked against what was sent.

The traffic (`send_traffic`):
- session `sess-travel-1` (service travel-agent): an agent span → an LLM call with tokens and
  messages → two tool calls, one failing with an exception → a second LLM call; exact times,
  so durations are known to the nanosecond, and costs follow from tokens × the test's prices;
- session `sess-checkout` (service checkout-agent): 30 traces whose HTTP call fails every other
  time, which fires `error_rate_spike` and opens the `checkout_api` breaker (a decision whose
  cause is that trigger).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanKind, Status, StatusCode

from testkit.harness import ROOT, Daemon, default_config_env, wait_until
from testkit.otlp_spans import otlp_exporter, sdk_provider

DEFAULT_CONFIG = (ROOT / "config" / "default.yaml").read_text()
OVERLAY = """
connectors:
  triggers:
    evaluation_interval: 100ms
    error_rate_spike: {min_count: 20, window: 3s}
processors:
  genai: {prices_file: "{dir}/prices.yaml"}
  batch: {timeout: 50ms}
  safety:
    tick_interval: 100ms
    breakers:
      checkout_api:
        failure_threshold: 1
        timeout: 60s
        fallback: cached_checkout
        match: [{kinds: [error_rate_spike], subject: {service: checkout-agent}}]
service:
  extensions: [health_check, debug_api, explorer, file_storage]
"""
PRICES = "models:\n  - model: gpt-4o\n    input: 2.5\n    output: 10.0\n"  # USD per million tokens
IN_RATE, OUT_RATE = 2.5e-6, 10.0e-6
SESSION = "sess-travel-1"
CHECKOUT = "sess-checkout"
MS = 1_000_000


@dataclass
class Sent:
    """What the test sent, by span name (travel session) and the checkout traces."""

    base_ns: int
    spans: dict[str, Any] = field(default_factory=dict)  # name → ReadableSpan
    checkout_traces: set[str] = field(default_factory=set)
    checkout_errors: int = 0
    checkout_spans: int = 0


def start_daemon(workdir: Path, token: str = "") -> Daemon:
    (workdir / "prices.yaml").write_text(PRICES)
    daemon = Daemon(DEFAULT_CONFIG, workdir=workdir, overlay=OVERLAY)
    daemon.env = {**default_config_env(daemon, workdir / "data"), "AGENTDBG_EXPLORER_TOKEN": token}
    return daemon.start()


def _messages(role: str, **part: Any) -> str:
    return json.dumps([{"role": role, "parts": [part]}])


def send_travel(port: int, base: int) -> dict[str, Any]:
    provider, memory = sdk_provider(Resource.create({"service.name": "travel-agent"}), otlp_exporter("grpc", port))
    tracer = provider.get_tracer("travel.agent")
    import opentelemetry.trace as trace_api

    root = tracer.start_span("invoke_agent planner", kind=SpanKind.SERVER, start_time=base, attributes={
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner", "gen_ai.conversation.id": SESSION})
    context = trace_api.set_span_in_context(root)

    def child(name: str, start_ms: int, end_ms: int, kind: SpanKind = SpanKind.CLIENT, **attrs: Any):
        span = tracer.start_span(name, context=context, kind=kind, start_time=base + start_ms * MS, attributes=attrs)
        return span, base + end_ms * MS

    llm1, end = child("chat gpt-4o", 100, 1100, **{
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 80,
        "gen_ai.input.messages": _messages("user", type="text", content="Plan a trip to Lisbon"),
        "gen_ai.output.messages": _messages("assistant", type="tool_call", name="search_flights",
                                            arguments={"to": "LIS"})})
    llm1.end(end)
    tool1, end = child("execute_tool search_flights", 1200, 1500, SpanKind.INTERNAL, **{
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search_flights",
        "gen_ai.tool.call.arguments": '{"to": "LIS"}', "gen_ai.tool.call.result": '{"flights": 3}',
        "flight.notes": "x" * 5000})
    tool1.end(end)
    tool2, end = child("execute_tool book_hotel", 1600, 2000, SpanKind.INTERNAL, **{
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "book_hotel",
        "gen_ai.tool.call.arguments": '{"city": "Lisbon"}'})
    tool2.add_event("exception", {"exception.type": "HotelApiError", "exception.message": "hotel API returned 503"},
                    timestamp=base + 1990 * MS)
    tool2.set_status(Status(StatusCode.ERROR, "hotel API returned 503"))
    tool2.end(end)
    llm2, end = child("chat gpt-4o", 2100, 2900, **{
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 1500, "gen_ai.usage.output_tokens": 200,
        "gen_ai.output.messages": _messages("assistant", type="text", content="Flights found; the hotel failed.")})
    llm2.end(end)
    root.end(base + 3000 * MS)
    provider.shutdown()
    spans = {}
    for span in memory.get_finished_spans():
        spans[span.name if span.name != "chat gpt-4o" or "chat#1" in spans else "chat#1"] = span
    spans["chat#2"] = spans.pop("chat gpt-4o")
    return spans


def send_checkout(port: int, base: int, sent: Sent) -> None:
    provider, memory = sdk_provider(Resource.create({"service.name": "checkout-agent"}), otlp_exporter("grpc", port))
    tracer = provider.get_tracer("checkout.agent")
    for index in range(30):
        with tracer.start_as_current_span("invoke_agent checkout", attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "checkout",
                "gen_ai.conversation.id": CHECKOUT}):
            with tracer.start_as_current_span("POST /pay", kind=SpanKind.CLIENT,
                                              attributes={"http.request.method": "POST",
                                                          "server.address": "payments.internal"}) as span:
                if index % 2 == 0:
                    span.set_status(Status(StatusCode.ERROR, "payment provider failed"))
    provider.shutdown()
    for span in memory.get_finished_spans():
        sent.checkout_traces.add(f"{span.context.trace_id:032x}")
        sent.checkout_spans += 1
        sent.checkout_errors += span.status.status_code == StatusCode.ERROR


def send_traffic(daemon: Daemon) -> Sent:
    sent = Sent(base_ns=time.time_ns() - 60_000 * MS)
    sent.spans = send_travel(daemon.ports["grpc"], sent.base_ns)
    send_checkout(daemon.ports["grpc"], sent.base_ns, sent)
    return sent


class Api:
    def __init__(self, daemon: Daemon, token: str = "") -> None:
        self.url = f"http://127.0.0.1:{daemon.ports['explorer']}"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, **params: Any) -> Any:
        answer = requests.get(self.url + path, params=params, headers=self.headers, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()


def wait_stored(api: Api, sent: Sent) -> None:
    """Until both sessions, the trigger and the breaker decision are readable."""
    wanted = 5 + sent.checkout_spans

    def ready() -> bool:
        rows = api.get("/api/sessions")["sessions"]
        spans = sum(row["spans"] for row in rows if row["session"] in (SESSION, CHECKOUT))
        decided = api.get("/api/decisions")["decisions"]
        return spans == wanted and any(d["action"] == "breaker_open" for d in decided)

    wait_until(ready, timeout=60, interval=0.3, message="sessions, trigger and breaker decision stored")


@pytest.fixture(scope="module")
def explorer(tmp_path_factory: pytest.TempPathFactory):
    daemon = start_daemon(tmp_path_factory.mktemp("explorer"))
    try:
        api = Api(daemon)
        sent = send_traffic(daemon)
        wait_stored(api, sent)
        yield daemon, api, sent
    finally:
        daemon.stop()
        daemon.kill()


def hex_id(span: Any) -> str:
    return f"{span.context.span_id:016x}"


def cost(tokens_in: int, tokens_out: int) -> float:
    return tokens_in * IN_RATE + tokens_out * OUT_RATE


def test_sessions_list_rows_match_what_was_sent(explorer) -> None:
    _, api, sent = explorer
    rows = {row["session"]: row for row in api.get("/api/sessions")["sessions"]}
    travel = rows[SESSION]
    assert travel["services"] == ["travel-agent"] and travel["agents"] == ["planner"]
    assert travel["spans"] == 5 and travel["traces"] == 1 and travel["errors"] == 1
    assert travel["start_ns"] == sent.base_ns and travel["duration_ns"] == 3000 * MS
    assert (travel["tokens_in"], travel["tokens_out"]) == (2700, 280)
    assert travel["cost"] == pytest.approx(cost(1200, 80) + cost(1500, 200))
    assert travel["triggers"] == 0
    checkout = rows[CHECKOUT]
    assert checkout["spans"] == sent.checkout_spans and checkout["traces"] == 30
    assert checkout["errors"] == sent.checkout_errors == 15 and checkout["triggers"] >= 1

    def only(**params: Any) -> set[str]:
        return {row["session"] for row in api.get("/api/sessions", **params)["sessions"]} & {SESSION, CHECKOUT}

    assert only(service="travel-agent") == {SESSION}
    assert only(agent="checkout") == {CHECKOUT}
    assert only(errors=1) == {SESSION, CHECKOUT}
    assert only(min_cost=0.001) == {SESSION}
    assert only(has_trigger=1) == {CHECKOUT}
    assert only(until=str(sent.base_ns - 1)) == set()
    assert only(since="2000-01-01T00:00:00Z", service="checkout-agent") == {CHECKOUT}


def test_session_tree_has_every_span_with_kinds_durations_tokens_costs(explorer) -> None:
    _, api, sent = explorer
    answer = api.get(f"/api/sessions/{SESSION}")
    spans = {span["span_id"]: span for span in answer["spans"]}
    assert set(spans) == {hex_id(span) for span in sent.spans.values()}
    root = spans[hex_id(sent.spans["invoke_agent planner"])]
    expected = {"invoke_agent planner": ("agent", 3000, 0, 0, 0.0, "Unset"),
                "chat#1": ("llm", 1000, 1200, 80, cost(1200, 80), "Unset"),
                "execute_tool search_flights": ("tool", 300, 0, 0, 0.0, "Unset"),
                "execute_tool book_hotel": ("tool", 400, 0, 0, 0.0, "Error"),
                "chat#2": ("llm", 800, 1500, 200, cost(1500, 200), "Unset")}
    for name, (kind, ms, tokens_in, tokens_out, usd, status) in expected.items():
        span = spans[hex_id(sent.spans[name])]
        assert span["kind"] == kind, name
        assert span["duration_ns"] == ms * MS and span["start_ns"] == sent.spans[name].start_time
        assert (span["tokens_in"], span["tokens_out"], span["status"]) == (tokens_in, tokens_out, status)
        assert span["cost"] == pytest.approx(usd)
        assert span["parent_id"] == ("" if span is root else root["span_id"])
    assert root["total"]["tokens_in"] == 2700 and root["total"]["tokens_out"] == 280
    assert root["total"]["cost"] == pytest.approx(cost(1200, 80) + cost(1500, 200)) and root["total"]["errors"] == 1
    failed = spans[hex_id(sent.spans["execute_tool book_hotel"])]
    assert failed["status_message"] == "hotel API returned 503"
    assert failed["events"][0]["attributes"]["exception.type"] == "HotelApiError"
    assert [span["start_ns"] for span in answer["spans"]] == sorted(span["start_ns"] for span in answer["spans"])
    chat = spans[hex_id(sent.spans["chat#1"])]["messages"]
    assert chat[0] == {"direction": "in", "role": "user", "text": "Plan a trip to Lisbon"}
    assert chat[1]["role"] == "assistant" and "search_flights" in chat[1]["text"]
    assert answer["duration_ns"] == 3000 * MS and answer["errors"] == 1


def test_span_detail_keeps_long_values_whole(explorer) -> None:
    _, api, sent = explorer
    span = sent.spans["execute_tool search_flights"]
    detail = api.get(f"/api/spans/{span.context.trace_id:032x}/{hex_id(span)}")
    assert detail["attributes"]["flight.notes"] == "x" * 5000
    assert detail["resource"]["service.name"] == "travel-agent" and detail["scope_name"] == "travel.agent"
    assert detail["session"] == SESSION and detail["kind"] == "tool"
    missing = requests.get(f"{api.url}/api/spans/{'0' * 32}/{'0' * 16}", timeout=5)
    assert missing.status_code == 404


def test_triggers_link_to_stored_example_spans_and_decisions_name_their_cause(explorer) -> None:
    _, api, sent = explorer
    fired = [t for t in api.get("/api/triggers")["triggers"] if t["kind"] == "error_rate_spike"]
    assert fired and fired[0]["subject"]["service"] == "checkout-agent"
    assert fired[0]["observed"] >= fired[0]["threshold"] and fired[0]["message"]
    examples = fired[0]["example_spans"]
    assert examples and all(e["session"] == CHECKOUT and e["trace_id"] in sent.checkout_traces for e in examples)
    opened = [d for d in api.get("/api/decisions")["decisions"] if d["action"] == "breaker_open"]
    assert opened[0]["target"] == "checkout_api"
    assert opened[0]["cause"]["kind"] == "error_rate_spike"
    assert opened[0]["cause"]["event_id"] in {t["id"] for t in fired}
    current = {c["target"]: c for c in api.get("/api/safety")["current"] if c["family"] == "breaker"}
    assert current["checkout_api"]["action"] in ("breaker_open", "fallback")
    assert current["checkout_api"]["cause"]["kind"] == "error_rate_spike"


def test_bad_parameters_are_400_and_the_query_api_is_read_only(explorer) -> None:
    _, api, _ = explorer
    assert requests.get(f"{api.url}/api/sessions", params={"min_cost": "lots"}, timeout=5).status_code == 400
    assert requests.get(f"{api.url}/api/sessions", params={"since": "yesterday"}, timeout=5).status_code == 400
    ok = requests.post(f"{api.url}/api/query", json={"sql": "SELECT count() AS n FROM otel.otel_traces",
                                                      "format": "json"}, timeout=10)
    assert ok.status_code == 200 and json.loads(ok.text)[0]["n"] >= 5
    for sql in ("INSERT INTO otel.otel_traces (SpanId) VALUES ('x')", "DROP TABLE otel.otel_traces"):
        assert requests.post(f"{api.url}/api/query", json={"sql": sql}, timeout=5).status_code == 403
    # Past the first-word check, the engine's readonly setting refuses it.
    sneaky = "WITH 1 AS x SELECT * FROM file('/etc/hostname', 'LineAsString')"
    refused = requests.post(f"{api.url}/api/query", json={"sql": sneaky}, timeout=5)
    assert refused.status_code == 403 and "readonly" in refused.text.lower()


def test_agent_graph_counts_calls_and_errors_per_edge(explorer) -> None:
    _, api, sent = explorer
    answer = api.get("/api/graph")
    edges = {(e["source"], e["target"]): e for e in answer["edges"]}
    assert {key: (e["calls"], e["errors"]) for key, e in edges.items()} == {
        ("agent:planner", "model:gpt-4o"): (2, 0),
        ("agent:planner", "tool:search_flights"): (1, 0),
        ("agent:planner", "tool:book_hotel"): (1, 1),
        ("agent:checkout", "http:payments.internal"): (30, sent.checkout_errors),
    }
    assert edges[("agent:checkout", "http:payments.internal")]["error_rate"] == 0.5
    assert {n["id"]: n["kind"] for n in answer["nodes"]}["tool:book_hotel"] == "tool"
    assert api.get("/api/graph", until=str(sent.base_ns - 1)) == {"nodes": [], "edges": []}


def test_live_tail_gives_the_newest_spans_of_a_service_or_session(explorer) -> None:
    _, api, sent = explorer
    spans = api.get("/api/tail", service="travel-agent", seconds=3600)["spans"]
    newest_first = sorted(sent.spans.values(), key=lambda s: -s.start_time)
    assert [s["span_id"] for s in spans] == [hex_id(s) for s in newest_first]
    assert {s["session"] for s in spans} <= {SESSION} | {f"{s.context.trace_id:032x}" for s in sent.spans.values()}
    by_session = api.get("/api/tail", session=CHECKOUT, seconds=3600, limit=10)["spans"]
    assert len(by_session) == 10 and all(s["service"] == "checkout-agent" for s in by_session)
    later = api.get("/api/tail", service="travel-agent", since=str(sent.base_ns + 1))["spans"]
    assert hex_id(sent.spans["invoke_agent planner"]) not in {s["span_id"] for s in later} and len(later) == 4


def test_openapi_document_on_the_debug_api_matches_what_is_served(explorer) -> None:
    daemon, api, _ = explorer
    debug = f"http://127.0.0.1:{daemon.ports['debug']}"
    doc = requests.get(f"{debug}/debug/docs/openapi.json", timeout=5).json()
    assert doc["openapi"] == "3.1.0"
    assert {"/api/sessions", "/api/sessions/{id}", "/api/spans/{trace}/{span}", "/api/triggers", "/api/decisions",
            "/api/safety", "/api/graph", "/api/tail", "/api/query", "/debug/health", "/debug/pipelines",
            "/debug/breakers", "/debug/docs"} <= set(doc["paths"])
    for path, item in doc["paths"].items():  # every parameterless GET answers where the document says
        if "get" in item and "{" not in path:
            base = item["servers"][0]["url"] if "servers" in item else debug
            # headers only: a push channel (/debug/decisions/stream) answers 200 and never ends
            with requests.get(base + path, timeout=10, stream=True) as answer:
                assert answer.status_code == 200, (path, answer.text)
    assert item["get"]["summary"]
    filters = {p["name"] for p in doc["paths"]["/api/sessions"]["get"]["parameters"]}
    assert filters == {"service", "agent", "since", "until", "errors", "min_cost", "has_trigger", "limit"}
    rendered = requests.get(f"{debug}/debug/docs", timeout=5)
    assert rendered.status_code == 200 and "GET http://127.0.0.1" in rendered.text and "/api/sessions" in rendered.text

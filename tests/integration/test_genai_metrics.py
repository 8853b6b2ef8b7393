"""genai_metrics in the running daemon: what the agents' spans said, on `/metrics`.

Agents made with the OpenTelemetry SDK send GenAI spans (current OTel names, and the older
OpenLLMetry names the `genai` processor normalises) over OTLP; the daemon runs `genai → batch
→ [file, genai_metrics]`. Read back from its `/metrics`:
- `gen_ai_client_token_usage` and `gen_ai_client_operation_duration_seconds`: every bucket,
  sum and count equal to what is worked out from the spans that were sent, by provider,
  model, operation, token type, error type, service and agent;
- `agentdbg_genai_cost_usd_total{service,agent,model}` equal to the sum of the
  `gen_ai.usage.cost` the processor wrote on the spans (read back from the file exporter);
- `promtool check metrics` finds nothing wrong with the scrape.
"""
from __future__ import annotations

import subprocess
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from exporters.genai_metrics import DURATION_BUCKETS, TOKEN_BUCKETS
from tests.conftest import require_binary
from testkit.harness import BASE_CONFIG, Daemon, batch_processor, component, file_exporter, pipeline_overlay, wait_until
from testkit.otlp_spans import each_span, attributes, export_spans, otlp_exporter, read_json_lines, sdk_provider

T0 = 1_780_000_000_000_000_000  # ns


@dataclass
class Call:
    """One GenAI call an agent makes, as the test sends it."""

    model: str
    input_tokens: int
    output_tokens: int
    seconds: float
    error: str | None = None
    legacy: bool = False  # OpenLLMetry names (gen_ai.system, prompt/completion tokens)


def genai_run(tracer: Any, agent: str, calls: Iterable[Call], start_ns: int, provider: str = "openai") -> int:
    """An `invoke_agent` span with one `chat` child per call and an `execute_tool` span, all
    with explicit times; returns the end time (ns)."""
    calls = list(calls)
    end = start_ns + int(sum(c.seconds for c in calls) * 1e9) + 2_000_000
    root = tracer.start_span(f"invoke_agent {agent}", kind=SpanKind.SERVER, start_time=start_ns, attributes={
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent, "gen_ai.provider.name": provider})
    context = trace_api.set_span_in_context(root)
    at = start_ns + 1_000_000
    for call in calls:
        attrs: dict[str, Any] = ({"gen_ai.system": provider, "llm.request.type": "chat",
                                  "gen_ai.request.model": call.model, "gen_ai.response.model": call.model,
                                  "gen_ai.usage.prompt_tokens": call.input_tokens,
                                  "gen_ai.usage.completion_tokens": call.output_tokens}
                                 if call.legacy else
                                 {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
                                  "gen_ai.request.model": call.model, "gen_ai.response.model": call.model,
                                  "gen_ai.usage.input_tokens": call.input_tokens,
                                  "gen_ai.usage.output_tokens": call.output_tokens})
        attrs["gen_ai.agent.name"] = agent
        span = tracer.start_span(f"chat {call.model}", context=context, kind=SpanKind.CLIENT, start_time=at,
                                 attributes=attrs)
        if call.error:
            # As the SDK's record_exception writes it; the genai processor takes error.type from it.
            span.add_event("exception", {"exception.type": call.error, "exception.message": "no answer"},
                           timestamp=at + 1000)
            span.set_status(Status(StatusCode.ERROR, f"{call.error} from {provider}"))
        at += int(call.seconds * 1e9)
        span.end(end_time=at)
    tool = tracer.start_span("execute_tool search", context=context, kind=SpanKind.INTERNAL, start_time=at,
                             attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search",
                                         "gen_ai.agent.name": agent})
    tool.end(end_time=at + 500_000)
    root.end(end_time=end)
    return end


PLAN = {
    "planner": [Call("gpt-4o-mini", 1200, 80, 0.5), Call("gpt-4o-mini", 4, 3000, 1.5),
                Call("gpt-4o", 70000, 250, 12.0, error="TimeoutError")],
    "coder": [Call("gpt-4o", 16, 16, 0.01), Call("gpt-4o-mini", 300, 64, 0.3, legacy=True),
              Call("house-model-x", 10, 10, 0.04)],
}
SERVICE = "metrics-agents"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    overlay = pipeline_overlay(file_exporter() + component("genai_metrics"),
                               component("genai") + batch_processor())
    with Daemon(BASE_CONFIG, workdir=tmp_path_factory.mktemp("genai-metrics"), overlay=overlay) as running:
        yield running


@pytest.fixture(scope="module")
def sent(daemon):
    """The SDK's own record of the spans, once the daemon has exported them all."""
    provider, memory = sdk_provider(Resource({"service.name": SERVICE}))
    tracer = provider.get_tracer("genai-metrics-test")
    start = T0
    for agent, calls in PLAN.items():
        start = genai_run(tracer, agent, calls, start) + 1_000_000
    provider.shutdown()
    spans = memory.get_finished_spans()
    export_spans(otlp_exporter("grpc", daemon.ports["grpc"], timeout=10), spans)
    wait_until(lambda: daemon.metric("otelcol_exporter_sent_spans_total", exporter="file") == len(spans),
               timeout=30, message="every span exported")
    return spans


def families(daemon) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(daemon.metrics_text())}


def nonempty(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if v}


def histogram_series(family: Any, service: str = SERVICE) -> dict[tuple, dict[str, Any]]:
    """{non-empty labels (without le): {"buckets": {le: n}, "sum": s, "count": c}} of a scraped
    histogram, for the spans of `service`."""
    out: dict[tuple, dict[str, Any]] = defaultdict(lambda: {"buckets": {}})
    for sample in family.samples:
        labels = nonempty(sample.labels)
        if labels.get("service_name") != service:
            continue
        le = labels.pop("le", None)
        key = tuple(sorted(labels.items()))
        if sample.name.endswith("_bucket"):
            out[key]["buckets"][float(le)] = sample.value
        else:
            out[key][sample.name.rsplit("_", 1)[1]] = sample.value
    return dict(out)


def expected_histogram(observations: dict[tuple, list[float]], bounds: tuple) -> dict[tuple, dict[str, Any]]:
    out = {}
    for key, values in observations.items():
        counts = [0] * (len(bounds) + 1)
        for value in values:
            counts[bisect_left(bounds, value)] += 1
        cumulative, running = {}, 0
        for bound, count in zip([*map(float, bounds), float("inf")], counts):
            running += count
            cumulative[bound] = running
        out[key] = {"buckets": cumulative, "sum": pytest.approx(sum(values)), "count": len(values)}
    return out


def model_labels(span: Any) -> dict[str, str]:
    """What each chat/agent span must be counted under: the canonical names, whatever the
    instrumentation family called them (the genai processor's job, so worked out here by hand)."""
    attrs = span.attributes
    operation = attrs.get("gen_ai.operation.name") or "chat"
    provider = attrs.get("gen_ai.provider.name") or attrs.get("gen_ai.system")
    return nonempty({"gen_ai_operation_name": operation, "gen_ai_provider_name": provider,
                     "gen_ai_request_model": attrs.get("gen_ai.request.model", ""),
                     "gen_ai_response_model": attrs.get("gen_ai.response.model", ""),
                     "service_name": SERVICE, "gen_ai_agent_name": attrs.get("gen_ai.agent.name", "")})


def test_token_usage_histogram_holds_every_token_sent(daemon, sent):
    observations: dict[tuple, list[float]] = defaultdict(list)
    for span in sent:
        attrs = span.attributes
        for token_type, keys in (("input", ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")),
                                 ("output", ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"))):
            value = next((attrs[k] for k in keys if k in attrs), None)
            if value is not None:
                labels = {**model_labels(span), "gen_ai_token_type": token_type}
                observations[tuple(sorted(labels.items()))].append(float(value))
    # (input, output) × (planner: mini, 4o; coder: 4o, mini, house model): the two planner mini calls share a series
    assert len(observations) == 2 * 5
    scraped = histogram_series(families(daemon)["gen_ai_client_token_usage"])
    assert scraped == expected_histogram(observations, TOKEN_BUCKETS)


def test_operation_duration_histogram_holds_every_operation_sent(daemon, sent):
    observations: dict[tuple, list[float]] = defaultdict(list)
    for span in sent:
        labels = model_labels(span)
        if span.status.status_code == StatusCode.ERROR:
            labels["error_type"] = next(e.attributes["exception.type"] for e in span.events if e.name == "exception")
        observations[tuple(sorted(labels.items()))].append((span.end_time - span.start_time) / 1e9)
    scraped = histogram_series(families(daemon)["gen_ai_client_operation_duration_seconds"])
    assert scraped == expected_histogram(observations, DURATION_BUCKETS)
    timeout = [v for k, v in scraped.items() if ("error_type", "TimeoutError") in k]
    assert len(timeout) == 1 and timeout[0]["buckets"][10.24] == 0 and timeout[0]["buckets"][20.48] == 1


def test_cost_counter_is_the_sum_of_the_costs_on_the_spans(daemon, sent):
    spent: dict[tuple, float] = defaultdict(float)
    for rs, _, span in each_span(read_json_lines(daemon.dir / "spans.jsonl")):
        attrs = attributes(span.attributes)
        if "gen_ai.usage.cost" in attrs:
            model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model")
            key = (("agent", attrs.get("gen_ai.agent.name", "")), ("model", model), ("service", SERVICE))
            spent[key] += attrs["gen_ai.usage.cost"]
    assert len(spent) >= 3 and all(usd > 0 for usd in spent.values())  # the house model has no price
    family = families(daemon)["agentdbg_genai_cost_usd"]
    scraped = {tuple(sorted(nonempty(s.labels).items())): s.value for s in family.samples
               if s.labels["service"] == SERVICE}
    assert scraped == pytest.approx(dict(spent))
    assert daemon.metric("agentdbg_genai_unpriced_spans_total", model="house-model-x") == 1


def test_promtool_accepts_the_scrape(daemon, sent):
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "check", "metrics"], input=daemon.metrics_text(), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gen_ai_client_token_usage" not in result.stdout + result.stderr


def test_an_error_type_the_span_already_has_is_the_label(daemon):
    provider, memory = sdk_provider(Resource({"service.name": "own-error-type"}))
    span = provider.get_tracer("genai-metrics-test").start_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes={
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "error.type": "rate_limited"})
    span.set_status(Status(StatusCode.ERROR, "429"))
    span.end()
    provider.shutdown()
    before = daemon.metric("otelcol_exporter_sent_spans_total", exporter="file")
    export_spans(otlp_exporter("grpc", daemon.ports["grpc"], timeout=10), memory.get_finished_spans())
    wait_until(lambda: daemon.metric("otelcol_exporter_sent_spans_total", exporter="file") == before + 1,
               timeout=30, message="the span exported")
    series = histogram_series(families(daemon)["gen_ai_client_operation_duration_seconds"], "own-error-type")
    assert [dict(key).get("error_type") for key in series] == ["rate_limited"]

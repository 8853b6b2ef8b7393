"""genai_metrics: spans folded into the GenAI histograms and the cost counter, read back as
Prometheus text from the daemon's own registry (what a scrape would return)."""
from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from exporters.genai_metrics import DURATION_BUCKETS, TOKEN_BUCKETS, GenAIMetricsConfig, factory
from exporters.genai_metrics.collector import COLLECTOR
from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.telemetry.metrics import render
from testkit.trigger_helpers import CLIENT, resource, span, traces


def exporter(name: str = "", **config):
    settings = Settings.make(Kind.EXPORTER, ComponentID("genai_metrics", name), Signal.TRACES)
    component = factory.create(settings, GenAIMetricsConfig(**config))
    asyncio.run(component.start(None))
    return component


@pytest.fixture
def running():
    """Each test gets a fresh exporter id, so earlier tests' series are not served."""
    made = []

    def make(**config):
        component = exporter(f"t{len(made)}-{id(made)}", **config)
        made.append(component)
        return component

    yield make
    for component in made:
        asyncio.run(component.shutdown())


def chat(model="gpt-4o", provider="openai", input_tokens=100, output_tokens=20, duration=0.5, agent=None,
         cost=None, error=None, **extra):
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.request.model": model,
             "gen_ai.response.model": model + "-2024", **extra}
    if input_tokens is not None:
        attrs["gen_ai.usage.input_tokens"] = input_tokens
    if output_tokens is not None:
        attrs["gen_ai.usage.output_tokens"] = output_tokens
    if agent:
        attrs["gen_ai.agent.name"] = agent
    if cost is not None:
        attrs["gen_ai.usage.cost"] = cost
    if error:
        attrs["error.type"] = error
    return span(f"chat {model}", kind=CLIENT, duration=duration, attrs=attrs, error=bool(error))


def samples(name: str) -> list:
    for family in text_string_to_metric_families(render().decode()):
        if family.name == name:
            return family.samples
    return []


def buckets(family: str, **labels: str) -> dict[str, float]:
    return {s.labels["le"]: s.value for s in samples(family)
            if s.name == family + "_bucket" and all(s.labels.get(k, "") == v for k, v in labels.items())}


def value(family: str, sample: str, **labels: str) -> float:
    return sum(s.value for s in samples(family)
               if s.name == sample and all(s.labels.get(k, "") == v for k, v in labels.items()))


def test_defaults_are_the_semantic_conventions_buckets():
    config = GenAIMetricsConfig()
    assert config.histogram.token_buckets == list(TOKEN_BUCKETS) == [
        1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
    assert config.histogram.duration_buckets == list(DURATION_BUCKETS)
    assert [d.name for d in config.dimensions] == ["service.name", "gen_ai.agent.name"]


def test_token_usage_and_duration_histograms_hold_what_was_sent(running):
    component = running()
    batch = traces(resource("planner-svc", [chat(input_tokens=100, output_tokens=20, duration=0.5, agent="planner"),
                                            chat(input_tokens=4, output_tokens=3000, duration=0.01, agent="planner"),
                                            span("not genai", duration=3.0)]))
    asyncio.run(component.consume(batch))
    family = "gen_ai_client_token_usage"
    common = dict(gen_ai_operation_name="chat", gen_ai_provider_name="openai", gen_ai_request_model="gpt-4o",
                  gen_ai_response_model="gpt-4o-2024", service_name="planner-svc", gen_ai_agent_name="planner")
    assert value(family, family + "_count", gen_ai_token_type="input", **common) == 2
    assert value(family, family + "_sum", gen_ai_token_type="input", **common) == 104
    assert value(family, family + "_sum", gen_ai_token_type="output", **common) == 3020
    inputs = buckets(family, gen_ai_token_type="input", **common)
    # 4 is in le=4 (upper-inclusive), 100 in le=256
    assert inputs["1.0"] == 0 and inputs["4.0"] == 1 and inputs["64.0"] == 1 and inputs["256.0"] == 2
    assert inputs["+Inf"] == 2
    outputs = buckets(family, gen_ai_token_type="output", **common)
    assert outputs["16.0"] == 0 and outputs["64.0"] == 1 and outputs["1024.0"] == 1 and outputs["4096.0"] == 2
    duration = "gen_ai_client_operation_duration_seconds"
    assert value(duration, duration + "_count", **common) == 2  # the span without gen_ai.operation.name is not one
    assert value(duration, duration + "_sum", **common) == pytest.approx(0.51)
    timings = buckets(duration, **common)
    assert timings["0.01"] == 1 and timings["0.32"] == 1 and timings["0.64"] == 2


def test_error_type_is_a_label_of_duration_with_the_other_fallback(running):
    component = running()
    broken = span("chat x", kind=CLIENT, duration=0.2, error=True,
                  attrs={"gen_ai.operation.name": "chat", "gen_ai.request.model": "x"})
    batch = traces(resource("svc", [chat(error="timeout"), broken, chat()]))
    asyncio.run(component.consume(batch))
    duration = "gen_ai_client_operation_duration_seconds"
    assert value(duration, duration + "_count", error_type="timeout") == 1
    assert value(duration, duration + "_count", error_type="_OTHER", gen_ai_request_model="x") == 1
    assert value(duration, duration + "_count", error_type="") == 1
    # token usage carries no error_type (the conventions do not list it there)
    assert all("error_type" not in s.labels for s in samples("gen_ai_client_token_usage"))


def test_cost_counter_by_service_agent_and_model(running):
    component = running()
    asyncio.run(component.consume(traces(
        resource("svc-a", [chat(cost=0.25, agent="planner"), chat(cost=0.5, agent="planner"),
                           chat(cost=1.0, model="claude", agent="coder")]),
        resource("svc-b", [chat(cost=2.0), chat(cost="1.0"), chat(cost=-1.0)]))))
    name = "agentdbg_genai_cost_usd"
    assert value(name, name + "_total", service="svc-a", agent="planner", model="gpt-4o-2024") == 0.75
    assert value(name, name + "_total", service="svc-a", agent="coder", model="claude-2024") == 1.0
    # a string or a negative cost is not a cost
    assert value(name, name + "_total", service="svc-b", agent="", model="gpt-4o-2024") == 2.0


def test_cardinality_is_bounded_and_the_overflow_counted(running):
    component = running(aggregation_cardinality_limit=3)
    models = [chat(model=f"m{i}", input_tokens=10, output_tokens=None, cost=1.0) for i in range(10)]
    asyncio.run(component.consume(traces(resource("svc", models))))
    family = "gen_ai_client_token_usage"
    series = {tuple(sorted(s.labels.items())) for s in samples(family) if s.name == family + "_count"}
    assert len(series) == 4  # 3 admitted + the overflow series
    assert value(family, family + "_count", otel_metric_overflow="true") == 7
    assert value(family, family + "_count") == 10  # totals stay exact
    overflow = [s for s in samples(family) if s.name == family + "_count" and s.labels.get("otel_metric_overflow")]
    # every other label is empty, which Prometheus stores as no label at all
    assert {k: v for k, v in overflow[0].labels.items() if v} == {"otel_metric_overflow": "true"}
    assert value("agentdbg_genai_metrics_overflow_spans", "agentdbg_genai_metrics_overflow_spans_total",
                 metric=family) == 7
    assert value("agentdbg_genai_cost_usd", "agentdbg_genai_cost_usd_total") == 10.0
    assert value("agentdbg_genai_cost_usd", "agentdbg_genai_cost_usd_total", otel_metric_overflow="true") == 7.0
    # A series admitted before keeps counting after the limit is reached.
    asyncio.run(component.consume(traces(resource("svc", [chat(model="m0", input_tokens=5, output_tokens=None)]))))
    assert value(family, family + "_count", gen_ai_request_model="m0") == 2


def test_extra_dimensions_from_span_then_resource_then_default(running):
    component = running(dimensions=[{"name": "deployment.environment"}, {"name": "tenant", "default": "none"}])
    batch = traces(resource("svc", [chat(**{"deployment.environment": "canary"}), chat()],
                            **{"deployment.environment": "prod"}))
    asyncio.run(component.consume(batch))
    duration = "gen_ai_client_operation_duration_seconds"
    assert value(duration, duration + "_count", deployment_environment="canary", tenant="none") == 1
    assert value(duration, duration + "_count", deployment_environment="prod", tenant="none") == 1
    assert all("service_name" not in s.labels for s in samples(duration))


def test_a_reload_under_the_same_id_keeps_the_series():
    first = exporter("reload")
    asyncio.run(first.consume(traces(resource("svc", [chat(input_tokens=7, output_tokens=None)]))))
    second = exporter("reload", aggregation_cardinality_limit=5)  # built beside the old one, as a reload does
    asyncio.run(first.shutdown())
    asyncio.run(second.consume(traces(resource("svc", [chat(input_tokens=7, output_tokens=None)]))))
    family = "gen_ai_client_token_usage"
    assert value(family, family + "_count", gen_ai_token_type="input") == 2
    assert second.stores.tokens.limit == 5
    asyncio.run(second.shutdown())
    assert samples(family) == []


def test_a_second_exporter_is_refused_while_one_runs(running):
    running()
    with pytest.raises(ValueError, match="only one genai_metrics exporter"):
        exporter("another")


def test_bad_config_is_refused():
    with pytest.raises(ValidationError, match="strictly increasing"):
        GenAIMetricsConfig(histogram={"token_buckets": [4, 1]})
    with pytest.raises(ValidationError, match="built-in label"):
        GenAIMetricsConfig(dimensions=[{"name": "error.type"}])
    with pytest.raises(ValidationError):
        GenAIMetricsConfig(aggregation_cardinality_limit=0)


def test_a_batch_without_genai_spans_adds_no_series(running):
    component = running()
    asyncio.run(component.consume(traces(resource("svc", [span("plain")]))))
    assert samples("gen_ai_client_token_usage") == []
    assert value("agentdbg_genai_metrics_series", "agentdbg_genai_metrics_series") == 0


def test_values_that_read_the_same_are_one_series(running):
    component = running(dimensions=[{"name": "tenant"}])
    asyncio.run(component.consume(traces(resource("svc", [chat(tenant=7), chat(tenant="7"), chat(tenant=True)]))))
    duration = "gen_ai_client_operation_duration_seconds"
    counts = {s.labels["tenant"]: s.value for s in samples(duration) if s.name == duration + "_count"}
    assert counts == {"7": 2, "true": 1}


def test_odd_token_values_are_not_counted(running):
    component = running()
    asyncio.run(component.consume(traces(resource("svc", [chat(input_tokens="12", output_tokens=-3),
                                                          chat(input_tokens=True, output_tokens=5)]))))
    family = "gen_ai_client_token_usage"
    assert value(family, family + "_count", gen_ai_token_type="input") == 0
    assert value(family, family + "_sum", gen_ai_token_type="output") == 5


def test_an_array_valued_dimension_is_labelled_by_its_text(running):
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    component = running(dimensions=[{"name": "tags"}])
    tagged = chat()
    tags = KeyValue(key="tags", value=AnyValue())
    tags.value.array_value.values.add(string_value="a")
    tagged.attributes.append(tags)
    asyncio.run(component.consume(traces(resource("svc", [tagged, chat()]))))
    duration = "gen_ai_client_operation_duration_seconds"
    counts = {s.labels["tags"]: s.value for s in samples(duration) if s.name == duration + "_count"}
    assert counts == {'["a"]': 1, "": 1}  # compact JSON, as otelcol writes an array as text

"""The `genai` processor in the running daemon: otlp receiver → genai → file (OTLP/JSON lines).

The OpenTelemetry Python SDK plays an agent instrumented two ways at once — an
OpenInference LLM span and an OpenLLMetry-style span with the old OpenTelemetry GenAI
names — plus a plain HTTP span of the same trace. The file the daemon writes must hold
every original attribute and the canonical `gen_ai.*` ones beside them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExporter

from testkit.harness import BASE_CONFIG, Daemon, component, file_exporter, pipeline_overlay, wait_until
from testkit.otlp_spans import attributes, each_span, otlp_exporter, read_json_lines, sdk_provider

OVERLAY = pipeline_overlay(file_exporter("out/spans.jsonl"),
                           processors=component("genai", prices_file="{dir}/prices.yaml"))

OPENINFERENCE = {
    "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "llm.provider": "openai",
    "llm.token_count.prompt": 1200, "llm.token_count.completion": 80,
    "llm.token_count.prompt_details.cache_read": 1024, "session.id": "chat-session-7",
    "llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": "plan my trip",
}
OLD_OTEL = {
    "gen_ai.system": "Anthropic", "llm.request.type": "chat", "gen_ai.request.model": "acme-internal-1",
    "gen_ai.usage.prompt_tokens": 300, "gen_ai.usage.completion_tokens": 20,
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("genai")
    (workdir / "prices.yaml").write_text("models:\n  - model: acme-internal-1\n    input: 2.0\n    output: 4.0\n")
    with Daemon(BASE_CONFIG, workdir=workdir, overlay=OVERLAY) as running:
        yield running


def send(exporter: SpanExporter, root: str) -> None:
    provider, _ = sdk_provider(Resource.create({"service.name": "travel-agent"}), exporter)
    tracer = provider.get_tracer("integration.genai")
    with tracer.start_as_current_span(root):
        with tracer.start_as_current_span("ChatCompletion", attributes=OPENINFERENCE):
            pass
        with tracer.start_as_current_span("anthropic.chat", attributes=OLD_OTEL):
            pass
        with tracer.start_as_current_span("GET /weather", attributes={"http.request.method": "GET"}):
            pass
    provider.shutdown()


def trace_of(path: Path, root: str) -> dict[str, dict[str, Any]] | None:
    """span name → attributes of the trace whose root span is `root`, once all four spans of
    it are in the file (OTLP/JSON, one request per line); None until then."""
    by_trace: dict[bytes, dict[str, dict[str, Any]]] = {}
    for _, _, span in each_span(read_json_lines(path)):
        by_trace.setdefault(span.trace_id, {})[span.name] = attributes(span.attributes)
    for spans in by_trace.values():
        if root in spans and len(spans) == 4:
            return spans
    return None


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_file_output_has_canonical_attributes_and_originals(daemon: Daemon, transport: str) -> None:
    out = daemon.dir / "out" / "spans.jsonl"
    root_name = f"agent-run over {transport}"
    send(otlp_exporter(transport, daemon.ports[transport]), root_name)
    spans = wait_until(lambda: trace_of(out, root_name), timeout=15, message=f"the {transport} trace in {out}")

    llm, old, http, root = (spans[n] for n in ("ChatCompletion", "anthropic.chat", "GET /weather", root_name))
    for original, result in ((OPENINFERENCE, llm), (OLD_OTEL, old)):
        assert {k: result[k] for k in original} == original  # originals untouched
    assert llm["gen_ai.operation.name"] == "chat" and llm["gen_ai.provider.name"] == "openai"
    assert llm["gen_ai.request.model"] == llm["gen_ai.response.model"] == "gpt-4o-mini"
    assert (llm["gen_ai.usage.input_tokens"], llm["gen_ai.usage.output_tokens"]) == (1200, 80)
    assert llm["gen_ai.usage.cache_read.input_tokens"] == 1024
    assert llm["gen_ai.usage.cost"] > 0
    assert (old["gen_ai.provider.name"], old["gen_ai.operation.name"]) == ("anthropic", "chat")
    assert (old["gen_ai.usage.input_tokens"], old["gen_ai.usage.output_tokens"]) == (300, 20)
    assert old["gen_ai.usage.cost"] == pytest.approx((300 * 2.0 + 20 * 4.0) / 1e6)  # from prices_file
    # the trace's session reaches every span of it, the HTTP call and the root included
    assert {s["gen_ai.conversation.id"] for s in (llm, old, http, root)} == {"chat-session-7"}
    assert http["http.request.method"] == "GET"

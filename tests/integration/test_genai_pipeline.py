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
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from pipeline import otlp_json
from tests.harness import Daemon, wait_until

CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {grpc}
      http:
        endpoint: {http}
processors:
  genai:
    prices_file: {dir}/prices.yaml
exporters:
  file:
    path: {dir}/out/spans.jsonl
    flush_interval: 50ms
extensions:
  health_check:
    endpoint: {health}
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [genai]
      exporters: [file]
  telemetry:
    metrics:
      address: {metrics}
"""

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
    with Daemon(CONFIG, workdir=workdir) as running:
        yield running


def send(exporter: Any, root: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "travel-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
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
    for line in path.read_bytes().splitlines() if path.exists() else []:
        message = otlp_json.decode(line, ExportTraceServiceRequest)
        for rs in message.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    by_trace.setdefault(span.trace_id, {})[span.name] = {
                        kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in span.attributes}
    for spans in by_trace.values():
        if root in spans and len(spans) == 4:
            return spans
    return None


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_file_output_has_canonical_attributes_and_originals(daemon: Daemon, transport: str) -> None:
    out = daemon.dir / "out" / "spans.jsonl"
    exporter = (GrpcSpanExporter(endpoint=f"127.0.0.1:{daemon.ports['grpc']}", insecure=True)
                if transport == "grpc"
                else HttpSpanExporter(endpoint=f"http://127.0.0.1:{daemon.ports['http']}/v1/traces"))
    root_name = f"agent-run over {transport}"
    send(exporter, root_name)
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

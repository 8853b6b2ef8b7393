"""A seeded fleet of AI agents, as OTLP trace requests: the load for benchmarks and scenarios.

Each trace is one agent invocation: an `invoke_agent` server span with LLM `chat` calls,
`execute_tool` calls and outgoing HTTP calls beneath it, carrying the OpenTelemetry GenAI
attributes real instrumentations send. The same seed gives the same spans.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-3-5-haiku-latest"),
          ("ollama", "llama3.1:8b")]
TOOLS = ["search_web", "read_file", "run_sql", "send_email", "fetch_url"]
DEPENDENCIES = ["api.weather.example", "postgres", "vector-db", "payments.example"]


def kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


@dataclass
class Fleet:
    seed: int = 1
    services: int = 8
    llm_calls: tuple[int, int] = (1, 4)
    tool_calls: tuple[int, int] = (0, 3)
    error_rate: float = 0.01
    start_ns: int = field(default_factory=lambda: time.time_ns())

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.clock = self.start_ns

    def _id(self, size: int) -> bytes:
        return self.rng.getrandbits(size * 8).to_bytes(size, "big") or b"\x01" * size

    def request(self, traces: int) -> ExportTraceServiceRequest:
        """One request holding `traces` agent invocations, grouped by service."""
        request = ExportTraceServiceRequest()
        by_service: dict[int, list[Span]] = {}
        for _ in range(traces):
            service = self.rng.randrange(self.services)
            by_service.setdefault(service, []).extend(self.trace(service))
        for service, spans in sorted(by_service.items()):
            rs = request.resource_spans.add()
            rs.resource.attributes.extend([kv("service.name", f"agent-{service}"),
                                           kv("service.version", "1.4.2"),
                                           kv("deployment.environment", "prod")])
            scope = rs.scope_spans.add()
            scope.scope.name, scope.scope.version = "agentdbg.fleet", "1.0"
            scope.spans.extend(spans)
        return request

    def trace(self, service: int) -> list[Span]:
        trace_id, root_id = self._id(16), self._id(8)
        start = self.clock
        self.clock += self.rng.randrange(1_000_000, 20_000_000)
        children: list[Span] = []
        cursor = start + 1_000_000
        for _ in range(self.rng.randint(*self.llm_calls)):
            children.append(self._chat(trace_id, root_id, cursor))
            cursor = children[-1].end_time_unix_nano
            for _ in range(self.rng.randint(*self.tool_calls)):
                children.extend(self._tool(trace_id, root_id, cursor))
                cursor = children[-1].end_time_unix_nano
        root = Span(trace_id=trace_id, span_id=root_id, name=f"invoke_agent planner-{service}",
                    kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=start, end_time_unix_nano=cursor + 500_000)
        root.attributes.extend([kv("gen_ai.operation.name", "invoke_agent"), kv("gen_ai.agent.name", f"planner-{service}"),
                                kv("gen_ai.agent.id", f"agent-{service}-1")])
        if self.rng.random() < self.error_rate:
            root.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="agent failed"))
        return [root, *children]

    def _chat(self, trace_id: bytes, parent: bytes, start: int) -> Span:
        provider, model = self.rng.choice(MODELS)
        duration = int(self.rng.lognormvariate(20.0, 0.5))  # ~0.5 s median
        inputs, outputs = self.rng.randrange(200, 6000), self.rng.randrange(20, 800)
        span = Span(trace_id=trace_id, span_id=self._id(8), parent_span_id=parent, name=f"chat {model}",
                    kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=start, end_time_unix_nano=start + duration)
        span.attributes.extend([kv("gen_ai.operation.name", "chat"), kv("gen_ai.provider.name", provider),
                                kv("gen_ai.request.model", model), kv("gen_ai.response.model", model),
                                kv("gen_ai.usage.input_tokens", inputs), kv("gen_ai.usage.output_tokens", outputs),
                                kv("gen_ai.request.temperature", 0.2), kv("server.address", f"api.{provider}.com")])
        return span

    def _tool(self, trace_id: bytes, parent: bytes, start: int) -> list[Span]:
        tool = self.rng.choice(TOOLS)
        tool_id = self._id(8)
        dependency = self.rng.choice(DEPENDENCIES)
        http_start = start + 200_000
        http_end = http_start + int(self.rng.lognormvariate(17.0, 0.6))  # ~25 ms median
        status = 500 if self.rng.random() < self.error_rate else 200
        http = Span(trace_id=trace_id, span_id=self._id(8), parent_span_id=tool_id, name="GET",
                    kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=http_start, end_time_unix_nano=http_end)
        http.attributes.extend([kv("http.request.method", "GET"), kv("server.address", dependency),
                                kv("peer.service", dependency), kv("http.response.status_code", status)])
        if status >= 500:
            http.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR))
        span = Span(trace_id=trace_id, span_id=tool_id, parent_span_id=parent, name=f"execute_tool {tool}",
                    kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=start, end_time_unix_nano=http_end + 300_000)
        span.attributes.extend([kv("gen_ai.operation.name", "execute_tool"), kv("gen_ai.tool.name", tool),
                                kv("gen_ai.tool.call.id", tool_id.hex()),
                                kv("gen_ai.tool.call.arguments", f'{{"q": "{self.rng.randrange(10**6)}"}}')])
        return [span, http]

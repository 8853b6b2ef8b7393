"""CPU cost of the `genai` processor, beside plain parsing, measured in one run.

Load: seeded agent traces whose spans come from a mix of instrumentation families (current
OpenTelemetry GenAI names, OpenInference with flattened messages, OpenLLMetry, Langfuse,
AgentOps), each trace an agent span with LLM calls, tool calls and the HTTP calls beneath
them — about a third of the spans carry no GenAI attribute at all. The same wire bytes go
through each variant, rounds interleaved so machine noise hits all of them alike:

- parse only: `Traces.from_wire` (the reference every pipeline pays);
- parse + attribute scan only: one Python pass over every attribute, decoding the ones the
  processor reads — the floor for any attribute-level work done in Python;
- parse + genai: the processor's batch walk, writes and session resolution;
- parse + genai + re-serialise: what an exporter then pays, since a changed batch loses its
  original bytes;
- plain HTTP traffic (no GenAI span) through parse + genai: the skip path.

Run: `python -m benchmarks.bench_genai [--requests N] [--rounds N]`; appends/refreshes its
section of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from benchmarks.results import table, write_section
from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.pdata.traces import Traces
from processors.genai import GenAIConfig, GenAIProcessor
from processors.genai.aliases import WANTED_KEYS
from testkit.fleet import kv
from testkit.genai_reference import pick

MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-3-5-haiku-latest"),
          ("anthropic", "claude-sonnet-4-5")]
FAMILIES = ("otel", "openinference", "openllmetry", "langfuse", "agentops")


class Mix:
    """Seeded generator of mixed-family agent traces."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)

    def _id(self, size: int) -> bytes:
        return self.rng.getrandbits(size * 8).to_bytes(size, "big")

    def request(self, traces: int, genai: bool = True) -> ExportTraceServiceRequest:
        message = ExportTraceServiceRequest()
        rs = message.resource_spans.add()
        rs.resource.attributes.extend([kv("service.name", "agent-svc"), kv("service.version", "2.1.0")])
        scope = rs.scope_spans.add()
        scope.scope.name = "bench.mix"
        for _ in range(traces):
            scope.spans.extend(self.trace(self.rng.choice(FAMILIES)) if genai else self.http_trace())
        return message

    def trace(self, family: str) -> list[Span]:
        trace_id, root_id = self._id(16), self._id(8)
        spans = [self._span(trace_id, None, "agent run", self._agent(family))]
        for _ in range(self.rng.randint(1, 4)):
            spans.append(self._span(trace_id, root_id, "llm call", self._llm(family)))
            for _ in range(self.rng.randint(0, 2)):
                tool_id = self._id(8)
                spans.append(self._span(trace_id, root_id, "tool call", self._tool(family), tool_id))
                spans.append(self._span(trace_id, tool_id, "GET", self._http()))
        spans[0].span_id = root_id
        return spans

    def http_trace(self) -> list[Span]:
        trace_id, root_id = self._id(16), self._id(8)
        spans = [self._span(trace_id, None, "GET /api", self._http(), root_id)]
        spans += [self._span(trace_id, root_id, "SELECT", {"db.system": "postgresql", "db.operation.name": "SELECT",
                                                           "server.address": "db"}) for _ in range(4)]
        return spans

    def _span(self, trace_id: bytes, parent: bytes | None, name: str, attrs: dict[str, object],
              span_id: bytes | None = None) -> Span:
        span = Span(trace_id=trace_id, span_id=span_id or self._id(8), parent_span_id=parent or b"", name=name,
                    start_time_unix_nano=1_700_000_000_000_000_000, end_time_unix_nano=1_700_000_000_500_000_000)
        span.attributes.extend(kv(k, v) for k, v in attrs.items())
        return span

    def _agent(self, family: str) -> dict[str, object]:
        name = self.rng.choice(["planner", "researcher", "coder"])
        return {"otel": {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name},
                "openinference": {"openinference.span.kind": "AGENT", "agent.name": name, "session.id": "s-1",
                                  "input.value": "plan a trip to Lisbon", "output.value": "done"},
                "openllmetry": {"traceloop.span.kind": "agent", "traceloop.entity.name": name,
                                "traceloop.association.properties.session_id": "s-2"},
                "langfuse": {"langfuse.observation.type": "agent", "langfuse.session.id": "s-3",
                             "langfuse.observation.input": '{"q": "hi"}'},
                "agentops": {"agentops.span.kind": "agent", "agent.name": name, "agent.id": "a-1"}}[family]

    def _llm(self, family: str) -> dict[str, object]:
        provider, model = self.rng.choice(MODELS)
        inp, out, cached = self.rng.randrange(200, 8000), self.rng.randrange(20, 900), self.rng.randrange(0, 150)
        if family == "otel":
            return {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.request.model": model,
                    "gen_ai.response.model": model, "gen_ai.usage.input_tokens": inp, "gen_ai.usage.output_tokens": out,
                    "gen_ai.request.temperature": 0.2, "server.address": f"api.{provider}.com"}
        if family == "openinference":
            messages = {f"llm.input_messages.{i}.message.{f}": f"{f} {i}" for i in range(3) for f in ("role", "content")}
            return {"openinference.span.kind": "LLM", "llm.model_name": model, "llm.provider": provider,
                    "llm.token_count.prompt": inp, "llm.token_count.completion": out,
                    "llm.token_count.total": inp + out, "llm.token_count.prompt_details.cache_read": cached,
                    "session.id": "s-1", "llm.invocation_parameters": '{"temperature": 0.2}',
                    "output.value": "answer", **messages}
        if family == "openllmetry":
            return {"gen_ai.system": provider, "llm.request.type": "chat", "gen_ai.request.model": model,
                    "gen_ai.response.model": model, "gen_ai.usage.prompt_tokens": inp,
                    "gen_ai.usage.completion_tokens": out, "llm.usage.total_tokens": inp + out,
                    "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "hello",
                    "gen_ai.completion.0.content": "hi"}
        if family == "langfuse":
            usage = f'{{"input": {inp - cached}, "input_cached_tokens": {cached}, "output": {out}}}'
            return {"langfuse.observation.type": "generation", "langfuse.observation.model.name": model,
                    "langfuse.observation.usage_details": usage, "langfuse.session.id": "s-3"}
        return {"agentops.span.kind": "llm", "gen_ai.system": provider, "gen_ai.request.model": model,
                "gen_ai.usage.prompt_tokens": inp, "gen_ai.usage.completion_tokens": out,
                "gen_ai.usage.total_tokens": inp + out}

    def _tool(self, family: str) -> dict[str, object]:
        tool = self.rng.choice(["search_web", "read_file", "run_sql"])
        return {"otel": {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool},
                "openinference": {"openinference.span.kind": "TOOL", "tool.name": tool, "session.id": "s-1",
                                  "input.value": '{"q": 1}'},
                "openllmetry": {"traceloop.span.kind": "tool", "traceloop.entity.name": tool},
                "langfuse": {"langfuse.observation.type": "tool"},
                "agentops": {"agentops.span.kind": "tool", "tool.name": tool}}[family]

    def _http(self) -> dict[str, object]:
        return {"http.request.method": "GET", "server.address": "api.example", "url.full": "https://api.example/x",
                "http.response.status_code": 200, "network.protocol.version": "1.1"}


def cpu_per_1000(run: Callable[[bytes], object], wires: list[bytes], spans: int) -> float:
    """CPU seconds per 1,000 spans for one pass of `run` over every request."""
    start = time.process_time()
    for wire in wires:
        run(wire)
    return (time.process_time() - start) / spans * 1000


def variants(proc: GenAIProcessor) -> dict[str, Callable[[bytes], object]]:
    def parse(wire: bytes) -> object:
        return Traces.from_wire(wire)

    def scan(wire: bytes) -> object:  # the floor of any per-attribute work in Python
        message = Traces.from_wire(wire).message
        return [pick(span, WANTED_KEYS) for rs in message.resource_spans for ss in rs.scope_spans
                for span in ss.spans]

    def genai(wire: bytes) -> object:
        batch = Traces.from_wire(wire)
        proc.process(batch)
        return batch

    def genai_wire(wire: bytes) -> object:
        return genai(wire).wire()

    return {"parse only (reference)": parse, "parse + attribute scan only": scan, "parse + genai": genai,
            "parse + genai + re-serialise": genai_wire}


def measure(requests: int, rounds: int, traces_per_request: int) -> tuple[list[list[object]], int, int]:
    mix = Mix()
    wires = [mix.request(traces_per_request).SerializeToString() for _ in range(requests)]
    plain = [mix.request(traces_per_request * 2, genai=False).SerializeToString() for _ in range(requests)]
    spans = sum(Traces.from_wire(w).item_count for w in wires)
    plain_spans = sum(Traces.from_wire(w).item_count for w in plain)
    proc = GenAIProcessor(Settings.make(Kind.PROCESSOR, ComponentID("genai"), Signal.TRACES), GenAIConfig(), None)
    runs = variants(proc)
    for run in runs.values():  # warm up: price lookups, imports, allocator
        cpu_per_1000(run, wires[:2], 1)
    samples: dict[str, list[float]] = {name: [] for name in [*runs, "plain parse", "plain parse + genai"]}
    for _ in range(rounds):
        for name, run in runs.items():
            samples[name].append(cpu_per_1000(run, wires, spans))
        samples["plain parse"].append(cpu_per_1000(runs["parse only (reference)"], plain, plain_spans))
        samples["plain parse + genai"].append(cpu_per_1000(runs["parse + genai"], plain, plain_spans))
    return rows(samples), spans, plain_spans


def rows(samples: dict[str, list[float]]) -> list[list[object]]:
    median = {name: statistics.median(values) for name, values in samples.items()}
    reference, plain = median["parse only (reference)"], median["plain parse"]
    result = [[f"agent mix: {name}", f"{median[name] * 1000:.2f} ms", f"{median[name] / reference:.2f}"]
              for name in ("parse only (reference)", "parse + attribute scan only", "parse + genai",
                           "parse + genai + re-serialise")]
    result.append(["plain HTTP/DB traffic: parse only", f"{plain * 1000:.2f} ms", "1.00"])
    result.append(["plain HTTP/DB traffic: parse + genai", f"{median['plain parse + genai'] * 1000:.2f} ms",
                   f"{median['plain parse + genai'] / plain:.2f}"])
    return result


NOTES = """

Where the rest goes, beyond the attribute scan: the per-span rules (alias rows, token
arithmetic, price lookup from the per-model cache), then encoding the added attributes and
merging them into the span (one `MergeFromString` per span; a trace's session id is
encoded once). Parsing alone is cheap because upb parses lazily; any Python that touches
each attribute costs several times more. What would cut it further: doing the scan and the
rules in C (a small extension, or upb's own field access from a compiled module); or
normalising only once per trace in the columnar view (`SpanColumns`) that the trigger
detectors and ClickHouse already build, instead of rewriting the spans.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--traces-per-request", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    result, spans, plain_spans = measure(args.requests, args.rounds, args.traces_per_request)
    body = (f"{spans} spans of the seeded mixed-family agent load (OpenTelemetry GenAI, OpenInference, "
            f"OpenLLMetry, Langfuse, AgentOps; about a third plain HTTP spans) in {args.requests} requests, and "
            f"{plain_spans} spans of plain HTTP/DB traffic; in-process, median of {args.rounds} interleaved rounds. "
            "CPU is process time per 1,000 spans; the ratio is to parse only of the same load.\n\n"
            + table(["load: variant", "CPU per 1,000 spans", "ratio to parse"], result) + NOTES)
    write_section("genai processor overhead", "python -m benchmarks.bench_genai", body)
    print(body)


if __name__ == "__main__":
    main()

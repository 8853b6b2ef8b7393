"""TEST CODE: agents on the OpenTelemetry SDK with partial-span-processor, which sends a
heartbeat log record (the span so far) for every open span, and a stop when it ends.

`python partial_agent.py <scenario>` with OTLP_ENDPOINT (the daemon's OTLP/HTTP base URL),
SERVICE_NAME, and the processor's timing in HEARTBEAT_MS / INITIAL_DELAY_MS / PROCESS_MS.
Scenarios (their lengths in seconds from the environment, so a test can keep them short):
- `blocked`: the agent's LLM call ends, then its tool call blocks for BLOCK_S and returns;
- `busy`: the agent runs RUN_S with an LLM call ending every STEP_S;
- `quick`: the agent waits, without children, END_S and ends;
- `streaming`: the agent's one LLM call streams for RUN_S (the LLM span heartbeats too);
- `hold`: OPEN_SPANS tool spans (no agent: nothing to judge) stay open for RUN_S, heartbeating
  (the heartbeat stream's cost, benchmarks/bench_live_deadlock.py).
With `agentlib` as the first argument the agent is set up by the project's agent-side library
(sutazai_agent.configure, live_spans on) instead of by hand.
Prints one JSON line: the UNIX times of the scenario's marks (block start and end ...).
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Callable

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from partial_span_processor import PartialSpanProcessor

ENDPOINT = os.environ.get("OTLP_ENDPOINT", "http://127.0.0.1:4318")
SERVICE = os.environ.get("SERVICE_NAME", "partial-agent")
AGENT = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}
CHAT = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.provider.name": "openai"}
TOOL = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}


def seconds(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def by_hand() -> TracerProvider:
    resource = Resource.create({"service.name": SERVICE})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(PartialSpanProcessor(
        OTLPLogExporter(endpoint=ENDPOINT + "/v1/logs"),
        heartbeat_interval_millis=int(seconds("HEARTBEAT_MS", 1000)),
        initial_heartbeat_delay_millis=int(seconds("INITIAL_DELAY_MS", 0)),
        process_interval_millis=int(seconds("PROCESS_MS", 100)), resource=resource))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=ENDPOINT + "/v1/traces"),
                                                   schedule_delay_millis=200))
    return provider


def with_agentlib() -> TracerProvider:
    import sutazai_agent

    agent = sutazai_agent.configure(SERVICE, "planner", endpoint=ENDPOINT, decisions=False, instrument=False)
    return agent.provider


def blocked(tracer: trace.Tracer, marks: dict[str, float]) -> None:
    with tracer.start_as_current_span("invoke_agent planner", attributes=AGENT):
        with tracer.start_as_current_span("chat gpt-4o-mini", kind=trace.SpanKind.CLIENT, attributes=CHAT):
            time.sleep(0.1)
        marks["block_start"] = time.time()
        with tracer.start_as_current_span("execute_tool search", attributes=TOOL):
            time.sleep(seconds("BLOCK_S", 15))
        marks["block_end"] = time.time()


def busy(tracer: trace.Tracer, marks: dict[str, float]) -> None:
    run, step = seconds("RUN_S", 30), seconds("STEP_S", 1)
    with tracer.start_as_current_span("invoke_agent planner", attributes=AGENT):
        marks["start"] = time.time()
        while time.time() - marks["start"] < run:
            with tracer.start_as_current_span("chat gpt-4o-mini", kind=trace.SpanKind.CLIENT, attributes=CHAT):
                time.sleep(step)


def quick(tracer: trace.Tracer, marks: dict[str, float]) -> None:
    with tracer.start_as_current_span("invoke_agent planner", attributes=AGENT):
        marks["start"] = time.time()
        time.sleep(seconds("END_S", 9.9))


def streaming(tracer: trace.Tracer, marks: dict[str, float]) -> None:
    with tracer.start_as_current_span("invoke_agent planner", attributes=AGENT):
        marks["start"] = time.time()
        with tracer.start_as_current_span("chat gpt-4o-mini", kind=trace.SpanKind.CLIENT,
                                          attributes={**CHAT, "gen_ai.request.stream": True}):
            time.sleep(seconds("RUN_S", 30))


def hold(tracer: trace.Tracer, marks: dict[str, float]) -> None:
    spans = [tracer.start_span(f"execute_tool search-{n}", attributes=TOOL)
             for n in range(int(seconds("OPEN_SPANS", 1000)))]
    marks["start"] = time.time()
    time.sleep(seconds("RUN_S", 30))
    for open_span in spans:
        open_span.end()


SCENARIOS: dict[str, Callable[[trace.Tracer, dict[str, float]], None]] = {
    "blocked": blocked, "busy": busy, "quick": quick, "streaming": streaming, "hold": hold}


def main() -> None:
    args = sys.argv[1:]
    provider = with_agentlib() if args[0] == "agentlib" else by_hand()
    marks: dict[str, float] = {}
    SCENARIOS[args[-1]](provider.get_tracer("partial.agent"), marks)
    marks["end"] = time.time()
    provider.shutdown()
    print(json.dumps(marks))


if __name__ == "__main__":
    main()

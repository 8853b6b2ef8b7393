"""Detection latency (acceptance 3 of the triggers issue): the span that crosses a threshold
sent → its trigger event exported, through a running daemon.

The daemon runs the shape of config/default.yaml: `otlp → genai → batch (200 ms) → [chdb,
triggers]`, the `triggers` connector with the product defaults (`evaluation_interval`
250 ms), and an events pipeline whose `webhook` exporter posts every trigger event to a sink
in this process (testkit/webhook_sink.py), which stamps each request's arrival. Every clock
read is this host's wall clock, so send and arrival times compare directly.

Each trial injects one fault into a fresh subject (a new service name, so no episode of an
earlier trial is still open) as one OTLP/HTTP request holding the span that crosses the
threshold; where a detector needs history first (a baseline, a minimum count), that history
is sent beforehand and given time to be evaluated, and is not timed. Measured from just
before the fault request is posted to the arrival of the subject's first firing event:

- error_rate_spike: 60 healthy server spans, then 30 failed ones (over 5 % in the window);
- performance_degradation: 50 spans of 100 ms (the learned baseline), then 40 of 1 s
  (the window's typical response goes over 2x the baseline);
- infinite_loop: one trace calling the same tool with the same arguments 5 times;
- dependency_failure: 4 timed-out CLIENT calls (`error.type: TimeoutError`) to one peer;
- context_overflow: one gpt-4o call with 125,000 input tokens (> 90 % of 128,000);
- cost_budget: one call costing $12 (over the $10 daily budget).

Kinds take turns (round robin), `--trials` of each, idle and then under a background load of
the seeded fleet (`--background` spans/s, paced, through the same pipeline). Reported: p50,
p99 (nearest rank) and max per kind and over all trials, plus where the time goes: sent →
`emitted_at` (the evaluation that fired it; includes the batch processor's wait) and
`emitted_at` → arrival (events pipeline and webhook). The deadlock detector is reported on
its own: by design it decides `decision_wait` (5 s) after a trace's last span, like tail
sampling, so its latency is that wait plus the same path; memory_leak and the CPU loop need
minutes of readings (their windows), and are not single-span faults. Each fault is sent at a
random point (seeded) of the batch timer and the evaluation tick, as real faults are.

    .venv/bin/python -m evaluation.detection_latency [--trials 6] [--background 5000]
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import random
import statistics
import threading
import time
from datetime import datetime
from typing import Any, Callable

import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from testkit.fleet import Fleet
from testkit.loadgen import post_http
from benchmarks.results import table, write_section
from testkit.harness import BASE_CONFIG, Daemon, wait_until
from testkit.trigger_helpers import CLIENT, INTERNAL, SERVER, new_span_id, resource, span
from testkit.webhook_sink import WebhookSink

SECTION = "trigger detection latency"
COMMAND = "python -m evaluation.detection_latency"
OVERLAY = """
processors:
  genai: {}
  batch: {timeout: 200ms}
connectors:
  triggers: {}
exporters:
  chdb: {path: "{dir}/chdb"}
  webhook/events: {endpoint: "%s"}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [genai, batch], exporters: [chdb, triggers]}
    events: {receivers: [triggers], exporters: [webhook/events]}
"""
_traces = itertools.count(10_000_000)


def request(service: str, spans: list) -> bytes:
    message = ExportTraceServiceRequest()
    message.resource_spans.append(resource(service, spans))
    return message.SerializeToString()


# -- faults: (history requests, fault request) for a fresh service -----------------------------------

Fault = tuple[list[bytes], bytes]


def error_burst(service: str) -> Fault:
    now = time.time()
    healthy = [span("POST /chat", trace=next(_traces), start=now - 1, duration=0.2, kind=SERVER) for _ in range(60)]
    failed = [span("POST /chat", trace=next(_traces), start=now - 0.5, duration=0.2, kind=SERVER, error=True)
              for _ in range(30)]
    return [request(service, healthy)], request(service, failed)


def slow_down(service: str) -> Fault:
    now = time.time()
    usual = [span("POST /plan", trace=next(_traces), start=now - 2, duration=0.1, kind=SERVER) for _ in range(50)]
    slow = [span("POST /plan", trace=next(_traces), start=now - 1.2, duration=1.0, kind=SERVER) for _ in range(40)]
    return [request(service, usual)], request(service, slow)


def tool_loop(service: str) -> Fault:
    now, trace = time.time(), next(_traces)
    attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search_web",
             "gen_ai.agent.name": "researcher", "gen_ai.tool.call.arguments": '{"q": "weather in Paris"}'}
    calls = [span("execute_tool search_web", trace=trace, start=now - 1 + i * 0.1, duration=0.05, attrs=attrs,
                  kind=INTERNAL) for i in range(5)]
    return [], request(service, calls)


def timeouts(service: str) -> Fault:
    now = time.time()
    calls = [span("GET", trace=next(_traces), start=now - 2, duration=1.0, kind=CLIENT, error=True,
                  attrs={"peer.service": f"{service}-db", "error.type": "TimeoutError"}) for _ in range(4)]
    return [], request(service, calls)


def overflow(service: str) -> Fault:
    now = time.time()
    call = span("chat gpt-4o", trace=next(_traces), start=now - 1, duration=0.8, kind=CLIENT,
                attrs={"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                       "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 125_000,
                       "gen_ai.usage.output_tokens": 100})
    return [], request(service, [call])


def expensive(service: str) -> Fault:
    now = time.time()
    call = span("chat gpt-4o", trace=next(_traces), start=now - 1, duration=0.8, kind=CLIENT,
                attrs={"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                       "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 2000,
                       "gen_ai.usage.output_tokens": 100, "gen_ai.usage.cost": 12.0})
    return [], request(service, [call])


def blocked_agent(service: str) -> Fault:
    now = time.time()
    agent = span("invoke_agent planner", trace=next(_traces), span_id=new_span_id(), start=now - 12, end=now,
                 kind=SERVER, attrs={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"})
    return [], request(service, [agent])


FAULTS: dict[str, Callable[[str], Fault]] = {
    "error_rate_spike": error_burst,
    "performance_degradation": slow_down,
    "infinite_loop": tool_loop,
    "dependency_failure": timeouts,
    "context_overflow": overflow,
    "cost_budget": expensive,
}
HISTORY_SETTLE = 0.8  # s: history passes the batch processor (200 ms) and one evaluation (250 ms)
PHASES = random.Random(20261124)  # seeded: the same run of send phases every time


# -- background load ------------------------------------------------------------------------------

class Background:
    """The seeded fleet posted at `rate` spans/s from a thread of its own, until stopped."""

    def __init__(self, url: str, rate: float) -> None:
        self.url, self.rate = url, rate
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.sent = 0

    async def _run(self) -> None:
        fleet = Fleet(seed=13)
        loop = asyncio.get_running_loop()
        start, due, pending = loop.time(), 0.0, set()
        while not self.stopping.is_set():
            message = fleet.request(20)
            spans = sum(len(s.spans) for rs in message.resource_spans for s in rs.scope_spans)
            await asyncio.sleep(max(0.0, start + due - loop.time()))
            task = asyncio.create_task(post_http(self.url, [message.SerializeToString()], concurrency=1))
            pending.add(task)
            task.add_done_callback(pending.discard)
            due += spans / self.rate
            self.sent += spans
        await asyncio.gather(*pending, return_exceptions=True)

    def __enter__(self) -> "Background":
        if self.rate:
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(30)


# -- trials -----------------------------------------------------------------------------------------

def emitted(doc: dict[str, Any]) -> float:
    return datetime.fromisoformat(doc["emitted_at"].replace("Z", "+00:00")).timestamp()


def trial(daemon_url: str, sink: WebhookSink, kind: str, service: str, timeout: float) -> dict[str, float]:
    history, fault = FAULTS.get(kind, blocked_agent)(service)
    for payload in history:
        post(daemon_url, payload)
    # A random phase against the batch timer and the evaluation tick, as real faults have (sent
    # straight after the previous trial's event, every fault would land just after a tick).
    time.sleep(HISTORY_SETTLE * bool(history) + PHASES.uniform(0, 0.5))
    sent = time.time()
    post(daemon_url, fault)

    def arrived() -> dict | None:
        for call in list(sink.calls):
            doc = call["body"]
            if (doc.get("kind") == kind and doc.get("status") == "firing"
                    and doc.get("subject", {}).get("service") == service):
                return {"total": call["received_at"] - sent, "to_emitted": emitted(doc) - sent,
                        "export": call["received_at"] - emitted(doc)}
        return None

    return wait_until(arrived, timeout=timeout, interval=0.002, message=f"the {kind} event of {service}")


def post(url: str, payload: bytes) -> None:
    response = requests.post(url, data=payload, headers={"Content-Type": "application/x-protobuf"}, timeout=10)
    response.raise_for_status()


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(label: str, runs: list[dict[str, float]]) -> list[str]:
    total = [r["total"] for r in runs]
    return [label, str(len(runs)), ms(statistics.median(total)), ms(nearest_rank(total, 0.99)), ms(max(total)),
            ms(statistics.median(r["to_emitted"] for r in runs)), ms(statistics.median(r["export"] for r in runs))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def phase(label: str, background: float, trials: int, deadlock_trials: int) -> tuple[list[list[str]], str]:
    sink = WebhookSink().start()
    try:
        with Daemon(BASE_CONFIG, overlay=OVERLAY % sink.url) as daemon:
            url = f"http://127.0.0.1:{daemon.ports['http']}/v1/traces"
            with Background(url, background) as load:
                time.sleep(1.0 if background else 0.2)
                started = time.time()
                results: dict[str, list[dict[str, float]]] = {kind: [] for kind in [*FAULTS, "deadlock"]}
                for n in range(trials):
                    for kind in FAULTS:
                        results[kind].append(trial(url, sink, kind, f"lat-{kind}-{n}", timeout=15))
                for n in range(deadlock_trials):
                    results["deadlock"].append(trial(url, sink, "deadlock", f"lat-deadlock-{n}", timeout=20))
            rate = f"; background {load.sent / max(time.time() - started, 1e-9):,.0f} spans/s offered" if background else ""
    finally:
        sink.stop()
    rows = [summary(f"{label}: {kind}", runs) for kind, runs in results.items() if runs and kind != "deadlock"]
    rows.append(summary(f"**{label}: all single-span faults**",
                        [r for kind, runs in results.items() if kind != "deadlock" for r in runs]))
    if results["deadlock"]:
        rows.append(summary(f"{label}: deadlock (decides after decision_wait, 5 s)", results["deadlock"]))
    return rows, rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=6, help="trials of each kind, per phase")
    parser.add_argument("--deadlock-trials", type=int, default=3)
    parser.add_argument("--background", type=float, default=5000, help="fleet spans/s in the loaded phase (0: none)")
    args = parser.parse_args()
    rows, _ = phase("idle", 0, args.trials, args.deadlock_trials)
    notes = ""
    if args.background:
        loaded, rate = phase("loaded", args.background, args.trials, 0)
        rows += loaded
        notes = f" The loaded phase runs the seeded fleet beside the trials at {args.background:,.0f} spans/s{rate}."
    body = ("Fault span sent → its trigger event received by a webhook sink, through a daemon running "
            "`otlp → genai → batch (200 ms) → [chdb, triggers]` with the product defaults (evaluation every 250 ms) "
            "and an events pipeline with a `webhook` exporter. One host, one wall clock. Each trial is a fresh "
            f"subject; kinds take turns.{notes} p99 is the nearest rank (with few trials per kind, the largest). "
            "`sent → emitted` ends at the event's `emitted_at` (batch wait + evaluation tick); `emitted → "
            "received` is the events pipeline and the webhook POST.\n\n"
            + table(["fault", "trials", "p50", "p99", "max", "sent → emitted (p50)", "emitted → received (p50)"],
                    rows))
    print(body)
    write_section(SECTION, COMMAND, body)


if __name__ == "__main__":
    main()

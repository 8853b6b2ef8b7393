"""The agent side (agentlib/, sutazai_agent): what it costs per call, and how fast it follows the daemon.

1. Per-call overhead, in this process, every variant in the same run, rounds interleaved, the
   minimum of the rounds per variant (the machine is shared): a bare call of a trivial function
   against the same function behind
   - a plain OpenTelemetry SDK span around it (the reference for the traced variants);
   - a closed `circuit_breaker` with tracing off (a no-op tracer): the breaker's own work;
   - a closed `circuit_breaker` with the OpenTelemetry SDK recording its span (batch processor,
     an exporter that drops): the breaker plus its span;
   - `instrument_agent` on the function (one `invoke_agent` span per call);
   - an unthrottled `throttle` (no decision for its target).
2. Decision → first fallback call, with real parts: the example agent (examples/resilient_agent.py,
   openai SDK, otel_v2 client venv) against the fake OpenAI server and the daemon (triggers +
   safety in process, testkit/agent_process.py). Each run stalls the primary model, waits for the
   agent's first call on `tinyllama`, then lifts the fault, waits for the episode to resolve and
   resets the breaker (an operator's reset), so every run starts closed on the primary. Measured on
   one host's wall clock: the `fallback` decision's `decided_at` → the agent receiving it (its feed)
   → the start of its first call on the fallback (calls every `--interval`).
3. The throttled call rate against the decided rate: a second agent calling as fast as it can
   while its service is throttled (a spent daily budget), calls per second over `--throttle-calls`.
4. The daemon SIGKILLed: the longest call of `--dead-calls` calls with the primary stalled
   against the calls' own timeout (nothing waits for the dead daemon).

    .venv/bin/python -m benchmarks.bench_agent [--runs 15] [--calls 20000] [--rounds 7]
"""
from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

import requests
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from sutazai_agent import CircuitBreaker, Throttle, configure, instrument_agent

from benchmarks.results import table, write_section
from testkit import agent_process as kit
from testkit.fake_openai import FakeOpenAI
from testkit.harness import BASE_CONFIG, ROOT, Daemon, wait_until

CLIENT_PYTHON = ROOT / ".cache" / "clients" / "otel_v2" / "bin" / "python"


class Dropping(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def work(x: int) -> int:
    return x + 1


def variants() -> dict[str, Callable[[int], int]]:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropping(), max_queue_size=1 << 16))
    agent = configure(service_name="bench-agent", agent_name="bench-agent", exporter=Dropping(), set_global=False,
                      decisions=False, instrument=False, live_spans=False)
    agent.provider = provider  # instrument_agent's spans through the same processor as the breaker's
    agent._tracer = provider.get_tracer("sutazai_agent")
    sdk = provider.get_tracer("b")

    def in_a_span(x: int) -> int:
        with sdk.start_as_current_span("bare span"):
            return work(x)

    return {"bare call": work,
            "the same in a plain SDK span (reference)": in_a_span,
            "closed breaker, no tracing": CircuitBreaker("bench", tracer=trace.NoOpTracer())(work),
            "closed breaker + its span (SDK)": CircuitBreaker("bench", tracer=sdk)(work),
            "instrument_agent (invoke_agent span)": instrument_agent(name="bench-agent")(work),
            "unthrottled throttle": Throttle("service=bench")(work)}


def per_call(calls: int, rounds: int) -> list[list[object]]:
    funcs = variants()
    best = {name: float("inf") for name in funcs}
    for _ in range(rounds):
        for name, fn in funcs.items():
            started = time.perf_counter()
            for i in range(calls):
                fn(i)
            best[name] = min(best[name], (time.perf_counter() - started) / calls)
    bare = best["bare call"]
    return [[name, f"{seconds * 1e6:.2f}", "—" if name == "bare call" else f"{(seconds - bare) * 1e6:.2f}",
             f"{seconds / bare:.1f}x"] for name, seconds in best.items()]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def reset_breaker(daemon: Daemon, run: int) -> None:
    answer = requests.post(f"http://127.0.0.1:{daemon.ports['debug']}/debug/breakers/ollama_model/reset",
                           json={"requested_by": "bench_agent", "reason": f"run {run}"},
                           headers={"Authorization": f"Bearer {kit.TOKEN}"}, timeout=10)
    answer.raise_for_status()


def resolved(daemon: Daemon) -> int:
    """How many dependency_failure episodes on ollama have resolved so far."""
    return sum(1 for d in kit.daemon_decisions(daemon) if d["action"] == "resolve_alert"
               and d["target"].get("kind") == "dependency_failure" and d["target"].get("dependency") == "ollama")


def fallback_latency(daemon: Daemon, fake: FakeOpenAI, runs: int, interval: float) -> dict[str, list[float]]:
    agent = kit.AgentRun(CLIENT_PYTHON, daemon, fake, "--model", "llama3", "--interval", str(interval),
                     "--timeout", "0.5", "--threshold", "1000", "--recovery", "2")
    found: dict[str, list[float]] = {"notified": [], "first fallback call": []}
    try:
        agent.wait(lambda calls: kit.first(calls, outcome="ok", feed_connected=True), "the agent connected")
        for run in range(runs):
            mark = agent.calls()[-1]
            fake.stall["llama3"] = 30.0
            switched = agent.wait(lambda calls, m=mark: kit.first(kit.after(calls, m), model="tinyllama"),
                                  "a fallback call")
            [decision] = [r for r in agent.records[::-1] if r["event"] == "decision" and r["action"] == "fallback"
                          and (r["state"] or {}).get("fallback") == "tinyllama"][:1]
            decided = stamp(decision["decided_at"])
            found["notified"].append(decision["received"] - decided)
            found["first fallback call"].append(switched["start"] - decided)
            episodes = resolved(daemon)
            fake.stall.clear()
            wait_until(lambda n=episodes: resolved(daemon) > n, timeout=60,
                       message="the timeouts' episode resolved")  # so that the next run's fires anew
            reset_breaker(daemon, run)
            agent.wait(lambda calls, s=switched: kit.first(kit.after(calls, s), model="primary", outcome="ok"), "back")
    finally:
        agent.stop()
    return found


def throttled_rate(daemon: Daemon, fake: FakeOpenAI, count: int) -> tuple[float, int]:
    agent = kit.AgentRun(CLIENT_PYTHON, daemon, fake, "--model", "gpt-4o-mini", "--service", "throttled-agent",
                     "--interval", "0", "--timeout", "5")
    try:
        start = agent.wait(lambda calls: kit.first(calls, throttled=True), "a throttled call")
        calls = agent.wait(lambda calls: [c for c in kit.after(calls, start) if c["throttled"]][:count]
                           if len(kit.after(calls, start)) >= count else None, f"{count} throttled calls", timeout=600)
    finally:
        agent.stop()
    return (len(calls) - 1) / (calls[-1]["start"] - calls[0]["start"]), len(calls)


def dead_daemon(daemon: Daemon, fake: FakeOpenAI, count: int, timeout: float) -> dict[str, Any]:
    agent = kit.AgentRun(CLIENT_PYTHON, daemon, fake, "--model", "llama3", "--interval", "0.05", "--timeout",
                     str(timeout), "--threshold", "5", "--recovery", "1")
    try:
        agent.wait(lambda calls: kit.first(calls, feed_connected=True), "connected")
        daemon.kill()
        mark = agent.wait(lambda calls: kit.first(calls, feed_connected=False), "disconnected")
        fake.stall["llama3"] = 30.0
        calls = agent.wait(lambda calls: kit.after(calls, mark)[:count] if len(kit.after(calls, mark)) >= count
                           else None, f"{count} calls with the daemon dead")
    finally:
        agent.stop()
        fake.stall.clear()
    served = {c["model"] for c in calls}
    return {"longest": max(c["duration"] for c in calls), "timeout": timeout, "served": sorted(served),
            "errors": sum(c["outcome"] != "ok" for c in calls), "calls": len(calls)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000, help="calls per round, per-call overhead")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=15, help="decision -> fallback runs")
    parser.add_argument("--interval", type=float, default=0.05, help="the agent's pause between calls")
    parser.add_argument("--throttle-calls", type=int, default=30)
    parser.add_argument("--dead-calls", type=int, default=30)
    args = parser.parse_args()

    overhead = per_call(args.calls, args.rounds)
    with FakeOpenAI() as fake:
        daemon = Daemon(BASE_CONFIG, workdir=Path(f"/tmp/bench-agent-{int(time.time())}"), overlay=kit.overlay())
        try:
            kit.start(daemon)
            latency = fallback_latency(daemon, fake, args.runs, args.interval)
            rate, throttled_calls = throttled_rate(daemon, fake, args.throttle_calls)
            dead = dead_daemon(daemon, fake, args.dead_calls, 0.5)
        finally:
            daemon.stop() if daemon.proc and daemon.proc.poll() is None else None
            daemon.kill()

    decided = kit.RATE_PER_MINUTE / 60
    rows = [[what, f"{pct(v, 0.5) * 1000:.0f}", f"{pct(v, 0.99) * 1000:.0f}", f"{max(v) * 1000:.0f}", len(v)]
            for what, v in latency.items()]
    body = "\n\n".join([
        "Per-call overhead (µs per call, the minimum of the rounds; the same run):",
        table(["variant", "µs/call", "overhead µs", "vs bare"], overhead),
        f"Decision → agent, {args.runs} runs (the agent calls every {args.interval:g} s; ms on one host's clock; "
        "target: first fallback call p99 < 1 s). The decision reaches the agent while a call to the stalled "
        "primary is in flight; that call is not cut short, so the first fallback call starts once it times out "
        "(0.5 s here) and the pause has passed:",
        table(["decided_at →", "p50 ms", "p99 ms", "max ms", "runs"], rows),
        table(["throttled rate", "decided rate", "measured / decided", "calls"],
              [[f"{rate:.2f}/s", f"{decided:.2f}/s ({kit.RATE_PER_MINUTE}/min, burst 1)", f"{rate / decided:.2f}",
                throttled_calls]]),
        table(["daemon SIGKILLed: longest call", "call timeout", "longest / timeout", "calls", "failed (timeouts)",
               "served by"],
              [[f"{dead['longest']:.3f} s", f"{dead['timeout']:g} s", f"{dead['longest'] / dead['timeout']:.2f}",
                dead["calls"], dead["errors"], ", ".join(dead["served"])]]),
    ])
    print(body)
    write_section("agent side: per-call overhead, decision → fallback, throttle",
                  f".venv/bin/python -m benchmarks.bench_agent --runs {args.runs} --calls {args.calls} "
                  f"--rounds {args.rounds}", body + "\n\nPercentiles are nearest-rank.")


if __name__ == "__main__":
    main()

"""An agent that keeps answering when its model does not: the sutazai_agent library in use.

    make run &                                   # the daemon on config/default.yaml
    .venv/bin/python examples/resilient_agent.py --calls 20

It asks an OpenAI-compatible server (`--base-url`, else OPENAI_BASE_URL, else Ollama's
http://localhost:11434/v1) for `--model` through a circuit breaker (`ollama_model`, the
daemon's breaker of that name) and a throttle, and prints one JSON line per call: which tier
served it (primary, tinyllama, cache_only, offline_mode), why, and how long it took. Spans go to
the daemon (OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318); the decisions come from its
debug API (AGENTDBG_DEBUG_URL, else http://localhost:10205; AGENTDBG_DEBUG_TOKEN when it needs
one). With no model server at all, every call fails fast, the local breaker opens after
`--threshold` failures, and the agent goes on answering from its cache, then offline.

Each decision the daemon pushes is printed too (`"event": "decision"`), with the daemon's
`decided_at` and the time it arrived here.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

import openai
from sutazai_agent import Throttled, circuit_breaker, configure, session, throttle

CACHE: dict[str, str] = {}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", "http://localhost:11434/v1"))
    parser.add_argument("--model", default="llama3.1:8b", help="the primary model")
    parser.add_argument("--service", default="resilient-agent")
    parser.add_argument("--calls", type=int, default=0, help="stop after this many calls (0: see --duration)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to run when --calls is 0")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between calls")
    parser.add_argument("--timeout", type=float, default=2.0, help="each model call's own timeout (seconds)")
    parser.add_argument("--threshold", type=int, default=5, help="local breaker: consecutive failures to open")
    parser.add_argument("--recovery", type=float, default=30.0, help="local breaker: seconds open before a probe")
    return parser.parse_args()


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def main() -> None:
    args = arguments()
    agent = configure(service_name=args.service, agent_name=args.service)
    if agent.feed is not None:
        agent.feed.on_decision(lambda kind, target, state, doc: emit({
            "event": "decision", "kind": kind, "target": target, "action": doc.get("action"),
            "decided_at": doc.get("decided_at"), "received": time.time(), "state": state}))
    client = openai.OpenAI(base_url=args.base_url, api_key=os.environ.get("OPENAI_API_KEY", "unused"),
                           max_retries=0, timeout=args.timeout)
    breaker = circuit_breaker("ollama_model", failure_threshold=args.threshold, recovery_timeout=args.recovery,
                              fallback_model="tinyllama", dependency="ollama",
                              fallbacks={"cache_only": lambda prompt: CACHE.get(prompt, "(no cached answer)"),
                                         "offline_mode": lambda prompt: "I am offline; please try again later."})

    limiter = throttle(f"service={args.service}")

    @limiter
    @breaker
    def ask(prompt: str, model: str = args.model) -> str:
        answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
        text = answer.choices[0].message.content or ""
        CACHE[prompt] = text
        return text

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exit through `finally`: the spans are flushed
    deadline = time.monotonic() + args.duration
    number = 0
    try:
        with session(f"{args.service}-session"):
            while (number < args.calls) if args.calls else (time.monotonic() < deadline):
                number += 1
                emit(call_once(ask, breaker, limiter, number, agent))
                time.sleep(args.interval)
    finally:
        emit({"event": "instrumented", "modules": agent.instrumented})
        agent.shutdown()


def call_once(ask: Any, breaker: Any, limiter: Any, number: int, agent: Any) -> dict[str, Any]:
    start, began = time.time(), time.monotonic()
    throttled = limiter.limits()[0] is not None  # the daemon throttles this service now
    outcome = "ok"
    try:
        ask("What is the weather in Lisbon?")
    except Throttled as exc:
        outcome = f"throttled: retry after {exc.retry_after:.2f}s"
    except Exception as exc:  # noqa: BLE001 - the breaker counted it; the agent goes on
        outcome = type(exc).__name__
    route = breaker.last
    return {"event": "call", "n": number, "start": start, "duration": time.monotonic() - began, "outcome": outcome,
            "feed_connected": bool(agent.feed and agent.feed.connected), "tier": route.tier,
            "model": route.model or "primary", "state": route.state, "source": route.source, "reason": route.reason,
            "probe": route.probe, "throttled": throttled}


if __name__ == "__main__":
    main()

"""The agent side end to end, with real parts: examples/resilient_agent.py (the `openai` SDK, the
OpenTelemetry SDK and the openai-v2 instrumentation, from the otel_v2 client venv, with
sutazai_agent on its path) against the fake OpenAI server, exporting to the real daemon with the
triggers connector and the safety processor in process; the agent follows the daemon's decisions
over `GET /debug/decisions/stream` (with the debug API's token).

The fake server injects provider timeouts (`stall`): the daemon's dependency_failure detector
sees the agent's own breaker spans time out (CLIENT, `peer.service=ollama`), the `ollama_model`
breaker opens, and the agent's next calls go to `tinyllama` before its local breaker would
have opened on its own. Faults stop: the daemon's breaker half-opens, closes and steps back,
and the calls return to the primary. The daemon is SIGKILLed: the agent goes on, its local
breaker opens on its own failures, probes and closes.

A throttle decision (a spent daily budget) limits the agent's call rate to the decided rate,
and an operator's lift ends it. The timings (decision to first fallback call, throttled rate)
are measured by benchmarks/bench_agent.py; here only what must hold on any machine is asserted.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import requests

from testkit.agent_process import RATE_PER_MINUTE, TOKEN, AgentRun, after, daemon_decisions, first, overlay, start
from testkit.fake_openai import FakeOpenAI
from testkit.harness import BASE_CONFIG, Daemon, wait_until
from testkit.otlp_spans import attributes as attrs
from testkit.otlp_spans import each_span, read_json_lines
from tests.clients.kit import family_python

THRESHOLD = 12  # the local breaker's: the daemon (2 timeouts, then its latency) must come first


def breaker_spans(daemon: Daemon) -> list[tuple[dict[str, Any], list[str]]]:
    """(attributes of each `breaker ollama_model` span of resilient-agent, the request models of its
    child chat spans)."""
    spans = [span for rs, _, span in each_span(read_json_lines(daemon.dir / "spans.jsonl"))
             if attrs(rs.resource.attributes).get("service.name") == "resilient-agent"]
    children: dict[bytes, list[str]] = {}
    for span in spans:
        model = attrs(span.attributes).get("gen_ai.request.model")
        if model:
            children.setdefault(span.parent_span_id, []).append(model)
    ours = sorted((s for s in spans if s.name == "breaker ollama_model"), key=lambda s: s.start_time_unix_nano)
    return [(attrs(s.attributes), children.get(s.span_id, [])) for s in ours]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    """One daemon and fake server for the module (the breaker test, last, kills the daemon)."""
    python = family_python("otel_v2")
    with FakeOpenAI() as fake:
        daemon = Daemon(BASE_CONFIG, workdir=tmp_path_factory.mktemp("agent-e2e"), overlay=overlay())
        start(daemon)
        try:
            yield python, daemon, fake
        finally:
            daemon.stop() if daemon.proc and daemon.proc.poll() is None else None
            daemon.kill()


def test_a_throttle_decision_limits_the_call_rate_and_lifting_it_ends_it(stack) -> None:
    python, daemon, fake = stack
    agent = AgentRun(python, daemon, fake, "--model", "gpt-4o-mini", "--service", "throttled-agent",
                     "--interval", "0", "--timeout", "5")
    try:
        # gpt-4o-mini's bundled price spends the 0.0005 USD daily budget in a few calls.
        # (The decision may come before the feed connected: then in its first snapshot.)
        first_throttled = agent.wait(lambda calls: first(calls, throttled=True), "a call under the throttle")
        [decided] = [d for d in daemon_decisions(daemon) if d["action"] == "throttle"]
        assert decided["target"] == "service=throttled-agent"
        assert decided["state"]["rate_per_minute"] == RATE_PER_MINUTE
        assert not any(c["throttled"] for c in agent.calls() if c["n"] < first_throttled["n"])
        start = len(agent.calls())
        agent.wait(lambda calls: len(calls) >= start + 12, "twelve throttled calls")
        window = agent.calls()[start + 1:start + 12]
        assert all(c["throttled"] for c in window)
        span = window[-1]["start"] - window[0]["start"]
        # A token bucket can never go faster than its rate (plus its burst); load only slows it.
        assert len(window) - 1 <= RATE_PER_MINUTE / 60 * span + 1
        lifted = requests.post(f"http://127.0.0.1:{daemon.ports['debug']}/debug/throttles/service=throttled-agent"
                               "/lift", json={"requested_by": "test", "reason": "budget raised"},
                               headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert lifted.status_code == 200, lifted.text
        agent.wait(lambda calls: next((r for r in agent.records if r["event"] == "decision"
                                       and r["action"] == "unthrottle"), None), "the unthrottle at the agent")
        free = len(agent.calls())
        agent.wait(lambda calls: len(calls) >= free + 5, "calls after the lift")
        assert not any(c["throttled"] for c in agent.calls()[free + 1:])
    finally:
        agent.stop()


def test_the_breaker_follows_the_daemon_recovers_and_keeps_serving_without_it(stack) -> None:
    python, daemon, fake = stack
    fake.reset()
    agent = AgentRun(python, daemon, fake, "--model", "llama3", "--interval", "0.1", "--timeout", "0.5",
                     "--threshold", str(THRESHOLD), "--recovery", "1")
    try:
        agent.wait(lambda calls: len([c for c in calls if c["outcome"] == "ok" and c["feed_connected"]]) >= 3,
                   "three primary calls with the decisions feed connected")

        # The provider times out: the daemon's breaker opens and the agent follows it.
        fake.stall["llama3"] = 30.0
        switched = agent.wait(lambda calls: first(calls, model="tinyllama"), "the first call on tinyllama")
        assert switched["source"] == "daemon" and switched["outcome"] == "ok", agent.describe()
        timed_out = [c for c in agent.calls() if c["outcome"] != "ok" and c["n"] < switched["n"]]
        assert timed_out and {c["outcome"] for c in timed_out} == {"APITimeoutError"}
        assert len(timed_out) < THRESHOLD  # the local breaker alone would not have switched yet
        opened = [d for d in daemon_decisions(daemon) if d["target"] == "ollama_model"]
        assert [d["action"] for d in opened][:2] == ["breaker_open", "fallback"]
        assert opened[1]["state"]["fallback"] == "tinyllama" and opened[1]["cause"]["kind"] == "dependency_failure"

        # Faults stop: half-open, closed, stepped back; calls return to the primary.
        fake.stall.clear()
        back = agent.wait(lambda calls: first(after(calls, switched), model="primary", outcome="ok"),
                          "a primary call again", timeout=60)
        actions = [d["action"] for d in daemon_decisions(daemon) if d["target"] == "ollama_model"]
        assert actions.index("breaker_open") < actions.index("breaker_half_open") < actions.index("breaker_close")
        assert [d["state"]["fallback"] for d in daemon_decisions(daemon) if d["action"] == "fallback"][-1] is None

        # What went in is what came out: the server answered every call the agent got an answer
        # to, with the model the agent logged (it may also have answered a call the agent had
        # given up on: a timeout), and the daemon stored each call's breaker span with its tier.
        served = Counter(c["model"] for c in agent.calls() if c["outcome"] == "ok" and c["n"] <= back["n"])
        answered = Counter("primary" if c.request_model == "llama3" else c.request_model for c in fake.calls)
        assert set(answered) == {"primary", "tinyllama"} and all(answered[m] >= n for m, n in served.items())
        wait_until(lambda: len(breaker_spans(daemon)) >= back["n"], timeout=20, message="the breaker spans stored")
        stored = breaker_spans(daemon)[:back["n"]]
        assert [a["sutazai.breaker.model"] for a, _ in stored] == [c["model"] for c in agent.calls()[:back["n"]]]
        daemon_tier = [(a, models) for a, models in stored if a["sutazai.breaker.source"] == "daemon"]
        assert daemon_tier and all(models == ["tinyllama"] for _, models in daemon_tier)  # openai-v2's chat span
        assert all(a["sutazai.breaker.reason"].startswith("daemon: breaker ollama_model") for a, _ in daemon_tier)

        # The daemon dies: the agent goes on alone and its local breaker opens on its own failures.
        daemon.kill()
        alone = agent.wait(lambda calls: first(after(calls, back), feed_connected=False), "the feed disconnected")
        fake.stall["llama3"] = 30.0
        local = agent.wait(lambda calls: first(after(calls, alone), model="tinyllama", source="local"),
                           "the local breaker open", timeout=60)
        before = [c for c in after(agent.calls(), alone) if c["n"] < local["n"]]
        assert [c["outcome"] for c in before[-THRESHOLD:]] == ["APITimeoutError"] * THRESHOLD
        failed_probe = agent.wait(lambda calls: first(after(calls, local), probe=True, outcome="APITimeoutError"),
                                  "a half-open probe that times out")
        fake.stall.clear()
        recovered = agent.wait(lambda calls: first(after(calls, failed_probe), probe=True, outcome="ok"),
                               "a probe that succeeds")
        closed = agent.wait(lambda calls: first(after(calls, recovered), model="primary", state="closed"),
                            "closed on the primary")
        assert closed["outcome"] == "ok" and closed["source"] == "local"
        during = [c for c in agent.calls() if alone["n"] <= c["n"] <= closed["n"]]
        assert {c["outcome"] for c in during} <= {"ok", "APITimeoutError"}  # each call ended by its own timeout
        assert not any(c["feed_connected"] for c in during)
    finally:
        records = agent.stop()
    [instrumented] = [r for r in records if r["event"] == "instrumented"]
    assert "opentelemetry.instrumentation.openai_v2" in instrumented["modules"]

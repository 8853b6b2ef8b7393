"""The agent library's circuit breaker: the state machine on a manual clock (no sleeps), and the
guard around real functions with the real OpenTelemetry SDK recording its spans in memory."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sutazai_agent import CircuitBreaker, DecisionFeed, current_call, fallback_tiers
from sutazai_agent.breaker import CLOSED, HALF_OPEN, OPEN, BreakerState, Remote
from sutazai_agent.clock import ManualClock

CHAIN = ("tinyllama", "cache_only", "offline_mode")


def machine(threshold: int = 3, recovery: float = 30.0, probes: int = 1) -> tuple[BreakerState, ManualClock]:
    clock = ManualClock()
    return BreakerState(fallback_tiers("tinyllama", CHAIN), threshold, recovery, probes, clock), clock


NO_DECISION = Remote()


def fail(state: BreakerState, times: int = 1, remote: Remote = NO_DECISION) -> None:
    for _ in range(times):
        state.failed(state.route(remote), "TimeoutError")


def test_the_fallback_chain_is_the_products() -> None:
    assert fallback_tiers("tinyllama", CHAIN) == CHAIN
    assert fallback_tiers("cache_only", CHAIN) == ("cache_only", "offline_mode")
    assert fallback_tiers("my-cache", CHAIN) == ("my-cache",)
    assert fallback_tiers(None, CHAIN) == CHAIN


def test_consecutive_failures_open_it_and_a_success_resets_the_count() -> None:
    state, _ = machine(threshold=3)
    fail(state, 2)
    state.succeeded(state.route())
    fail(state, 2)
    assert (state.state, state.route().model) == (CLOSED, None)
    fail(state, 1)
    route = state.route()
    assert (state.state, route.tier, route.model, route.source) == (OPEN, 1, "tinyllama", "local")
    assert "3 consecutive failures (TimeoutError)" in route.reason


def test_half_open_probes_the_primary_once_then_closes_on_success() -> None:
    state, clock = machine(threshold=1, recovery=30)
    fail(state)
    clock.advance(29.9)
    assert state.route().model == "tinyllama" and state.state == OPEN
    clock.advance(0.1)
    probe = state.route()
    other = state.route()  # while the probe is out, the others stay on the fallback
    assert state.state == HALF_OPEN
    assert (probe.model, probe.probe) == (None, True) and (other.model, other.probe) == ("tinyllama", False)
    state.succeeded(other)
    assert state.state == HALF_OPEN
    state.succeeded(probe)
    assert (state.state, state.route().model) == (CLOSED, None)


def test_a_failed_probe_reopens_with_a_fresh_timeout() -> None:
    state, clock = machine(threshold=1, recovery=10)
    fail(state)
    clock.advance(10)
    state.failed(state.route(), "TimeoutError")
    assert state.state == OPEN and "probe of the primary failed" in state.why
    clock.advance(9)
    assert state.route().model == "tinyllama"
    clock.advance(1)
    assert state.route().probe


def test_failures_on_a_fallback_step_down_the_chain_and_stop_at_its_end() -> None:
    state, _ = machine(threshold=2)
    fail(state, 2)
    assert state.route().model == "tinyllama"
    fail(state, 2)
    assert state.route().model == "cache_only"
    fail(state, 2)
    assert state.route().model == "offline_mode"
    fail(state, 10)
    assert (state.tier, state.route().model) == (3, "offline_mode")


def test_recovery_from_a_deep_tier_is_one_tier_per_timeout() -> None:
    state, clock = machine(threshold=1, recovery=5)
    fail(state, 2)  # primary, then tinyllama: on cache_only
    clock.advance(5)
    probe = state.route()
    assert probe.model == "tinyllama" and probe.probe
    state.succeeded(probe)
    assert (state.state, state.route().model) == (OPEN, "tinyllama")
    clock.advance(5)
    probe = state.route()
    assert probe.model is None and probe.probe
    state.succeeded(probe)
    assert state.state == CLOSED


def test_the_daemons_decision_is_a_floor_and_no_probe_goes_above_it() -> None:
    state, clock = machine(threshold=5, recovery=1)
    daemon = Remote(1, "open", "daemon: dependency_failure")
    route = state.route(daemon)
    assert (route.model, route.source, route.reason) == ("tinyllama", "daemon", "daemon: dependency_failure")
    assert state.state == CLOSED  # the local breaker saw nothing
    fail(state, 1)
    clock.advance(1)
    assert not state.route(daemon).probe  # its own tier 1 is the daemon's: nothing above to probe
    assert state.route().model is None


def test_failures_on_the_daemons_tier_count_from_there() -> None:
    state, _ = machine(threshold=2)
    daemon = Remote(1, "open", "daemon")
    fail(state, 1, daemon)
    assert state.route().model is None  # one hiccup of tinyllama does not pin this agent to it
    state.succeeded(state.route(daemon))
    fail(state, 1, daemon)
    assert state.route().model is None  # the success in between reset the count
    fail(state, 1, daemon)
    assert state.route().model == "cache_only"  # tinyllama failed twice in a row: one tier further


# -- the guard -------------------------------------------------------------------------------------
@pytest.fixture
def spans() -> tuple[Any, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def decision(action: str, state: str, tier: int, fallback: str | None, dry_run: bool = False) -> dict[str, Any]:
    return {"schema": "agentdbg.decision/v1", "id": f"{action}-{tier}", "action": action, "target": "ollama_model",
            "state": {"state": state, "tier": tier, "fallback": fallback, "open_until": None},
            "reason": f"breaker ollama_model: {action}", "dry_run": dry_run}


def test_sync_guard_hands_the_tier_model_and_records_it_on_the_span(spans) -> None:
    tracer, exporter = spans
    clock = ManualClock()
    feed = DecisionFeed("http://127.0.0.1:1")
    served: list[str] = []
    breaker = CircuitBreaker("ollama_model", failure_threshold=2, recovery_timeout=30, dependency="ollama",
                             feed=feed, clock=clock, tracer=tracer)

    @breaker
    def ask(prompt: str, model: str = "llama3") -> str:
        served.append(model)
        assert current_call() is not None and current_call().model == (None if model == "llama3" else model)
        if model == "llama3" and prompt == "fail":
            raise TimeoutError("read timed out")
        return f"{model}: {prompt}"

    assert ask("hi") == "llama3: hi"
    for _ in range(2):
        with pytest.raises(TimeoutError):
            ask("fail")
    assert ask("hi") == "tinyllama: hi"
    assert served == ["llama3", "llama3", "llama3", "tinyllama"]
    recorded = exporter.get_finished_spans()
    assert [s.attributes["sutazai.breaker.model"] for s in recorded] == ["primary", "primary", "primary", "tinyllama"]
    assert [s.attributes["sutazai.breaker.state"] for s in recorded] == ["closed", "closed", "closed", "open"]
    failed = recorded[1]
    assert failed.attributes["error.type"] == "TimeoutError" and failed.status.status_code.name == "ERROR"
    assert failed.kind.name == "CLIENT" and failed.attributes["peer.service"] == "ollama"
    assert [e.name for e in failed.events] == ["exception"]
    assert recorded[3].attributes["sutazai.breaker.tier"] == 1 and recorded[3].attributes["sutazai.breaker.source"] \
        == "local"


def test_guard_follows_the_daemons_decisions_and_ignores_dry_runs(spans) -> None:
    tracer, exporter = spans
    feed = DecisionFeed("http://127.0.0.1:1")
    breaker = CircuitBreaker("ollama_model", feed=feed, clock=ManualClock(), tracer=tracer)
    ask = breaker(lambda prompt, model="llama3": model)
    feed.apply_decision(decision("fallback", "open", 1, "tinyllama", dry_run=True))
    assert ask("a") == "llama3"
    feed.apply_decision(decision("fallback", "open", 1, "tinyllama"))
    assert ask("b") == "tinyllama"
    feed.apply_decision(decision("breaker_close", "closed", 1, "tinyllama"))
    assert ask("c") == "tinyllama"  # closed, but not yet stepped back to the primary
    feed.apply_decision(decision("fallback", "closed", 0, None))
    assert ask("d") == "llama3"
    sources = [(s.attributes["sutazai.breaker.source"], s.attributes["sutazai.breaker.reason"])
               for s in exporter.get_finished_spans()]
    assert sources[1] == ("daemon", "daemon: breaker ollama_model: fallback") and sources[3][0] == "local"
    feed.forget()  # the daemon out of reach: local state alone
    feed.apply_snapshot({"breakers": {"ollama_model": {"state": "open", "tier": 2, "fallback": "cache_only"}}})
    assert ask("e") == "cache_only"


def test_fallbacks_serve_tiers_that_are_not_models_and_ignored_errors_do_not_count(spans) -> None:
    tracer, _ = spans
    breaker = CircuitBreaker("database", failure_threshold=1, fallback_model="cache_only", clock=ManualClock(),
                             tracer=tracer, fallbacks={"cache_only": lambda key: f"cached {key}"},
                             ignore=(KeyError,))

    @breaker
    def read(key: str) -> str:
        if key == "missing":
            raise KeyError(key)
        raise ConnectionError("database down")

    with pytest.raises(KeyError):
        read("missing")
    assert breaker.state.state == CLOSED
    with pytest.raises(ConnectionError):
        read("a")
    assert read("a") == "cached a"


def test_context_managers_sync_and_async(spans) -> None:
    tracer, exporter = spans
    breaker = CircuitBreaker("ollama_model", failure_threshold=1, clock=ManualClock(), tracer=tracer)
    with pytest.raises(RuntimeError):
        with breaker as call:
            assert call.model is None
            raise RuntimeError("model crashed")
    with breaker as call:
        assert call.model == "tinyllama"

    async def use() -> str | None:
        async with breaker as call:
            return call.model

    assert asyncio.run(use()) == "tinyllama"
    assert [s.status.status_code.name for s in exporter.get_finished_spans()] == ["ERROR", "UNSET", "UNSET"]


def test_async_guard_cuts_a_call_at_its_timeout_and_counts_it(spans) -> None:
    tracer, exporter = spans
    breaker = CircuitBreaker("ollama_model", failure_threshold=1, timeout=0.001, clock=ManualClock(), tracer=tracer)

    @breaker
    async def ask(prompt: str, model: str = "llama3") -> str:
        if model == "llama3":
            await asyncio.Event().wait()  # a provider that never answers
        return model

    async def run() -> list[str]:
        with pytest.raises(TimeoutError):
            await ask("hi")
        return [await ask("hi")]

    assert asyncio.run(run()) == ["tinyllama"]
    assert exporter.get_finished_spans()[0].attributes["error.type"] == "TimeoutError"

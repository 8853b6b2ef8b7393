"""Breaker semantics the engine promises (processors/safety/breakers.py), driven with an
explicit clock: restart, fallback tiers, one decision per target, an operator's reset."""
from __future__ import annotations

import json

from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.documents import validate
from processors.safety import SafetyProcessor
from processors.safety.config import SafetyConfig
from processors.safety.engine import SafetyEngine, SafetyState
from tests.unit.test_safety_engine import actions, event

POSTGRES = {"dependency": "postgres"}


def restarted(engine: SafetyEngine, config: SafetyConfig | None = None) -> SafetyEngine:
    """The engine a new process builds from the state file the old one wrote."""
    return SafetyEngine(config or engine.config, SafetyState.from_json(engine.state.to_json(), restored=True))


def run_ticks(engine: SafetyEngine, start: float, end: float, step: float = 0.5) -> list[dict]:
    out, now = [], start
    while now <= end:
        out += engine.tick(now)
        now += step
    return out


def test_after_a_restart_an_open_breaker_probes_and_closes_without_stepping_down():
    engine = SafetyEngine(SafetyConfig())
    opened = engine.handle(event("dependency_failure", "firing", POSTGRES, observed=4), 100.0)
    assert actions(opened, "database") == ["breaker_open", "fallback"]
    engine = restarted(engine)  # the detector that raised the episode is gone: it never resolves

    quiet = run_ticks(engine, 101.0, 400.0)  # five minutes with no traffic at all
    assert actions(quiet, "database") == ["breaker_half_open", "breaker_close", "fallback"]
    half_open, close, step_back = [d for d in quiet if d["target"] == "database"]
    assert half_open["state"]["tier"] == 1 and close["state"]["tier"] == 1
    assert close["decided_at"] == "1970-01-01T00:02:00.000Z"  # half-open at 110 s, closed one timeout later
    assert step_back["state"] == {"state": "closed", "tier": 0, "fallback": None, "open_until": None}
    assert all(d["state"]["tier"] <= 1 for d in quiet), "it never stepped down the chain"


def test_after_a_restart_a_fresh_failure_reopens_one_tier_down():
    engine = SafetyEngine(SafetyConfig())
    engine.handle(event("dependency_failure", "firing", {"provider": "ollama"}, observed=5), 0.0)
    engine = restarted(engine)
    assert actions(engine.tick(30.0), "ollama_model") == ["breaker_half_open"]
    fresh = engine.handle(event("dependency_failure", "firing", {"provider": "ollama"}, observed=5,
                                episode="after-restart"), 31.0)
    assert actions(fresh, "ollama_model") == ["breaker_open", "fallback"]
    assert [d for d in fresh if d["action"] == "fallback"][0]["state"]["fallback"] == "cache_only"


def test_after_a_restart_a_resolution_of_a_restored_episode_closes_the_half_open_breaker():
    engine = SafetyEngine(SafetyConfig())
    engine.handle(event("dependency_failure", "firing", POSTGRES, observed=4, episode="ep"), 0.0)
    engine = restarted(engine)
    engine.tick(10.0)
    closed = engine.handle(event("dependency_failure", "resolved", POSTGRES, episode="ep"), 11.0)
    assert actions(closed, "database") == ["breaker_close"]


def test_a_redelivered_firing_after_a_restart_confirms_its_episode():
    engine = SafetyEngine(SafetyConfig())
    firing = event("dependency_failure", "firing", POSTGRES, observed=4, episode="ep")
    engine.handle(firing, 0.0)
    engine = restarted(engine)
    assert engine.handle(firing, 1.0) == []  # redelivered (Kafka, uncommitted): nothing new is decided
    assert actions(engine.tick(10.0), "database") == ["breaker_half_open"]
    reopened = engine.tick(20.0)  # still firing after the half-open period: open again, same fallback
    assert actions(reopened, "database") == ["breaker_open"]
    assert reopened[0]["state"]["fallback"] == "cache_only" and reopened[0]["state"]["tier"] == 1


def test_a_reload_in_the_same_process_keeps_the_episodes():
    engine = SafetyEngine(SafetyConfig())
    engine.handle(event("dependency_failure", "firing", POSTGRES, observed=4, episode="ep"), 0.0)
    reloaded = SafetyEngine(SafetyConfig(), SafetyState.from_json(engine.state.to_json(), restored=False))
    reloaded.tick(10.0)
    assert actions(reloaded.tick(20.0), "database") == ["breaker_open"]  # the episode still fires


def test_live_failures_still_firing_never_step_down_the_chain():
    engine = SafetyEngine(SafetyConfig())
    engine.handle(event("dependency_failure", "firing", {"provider": "ollama"}, observed=5), 0.0)
    decided = run_ticks(engine, 1.0, 600.0)  # ten minutes, the failure never resolves
    tiers = {d["state"]["tier"] for d in decided if d["target"] == "ollama_model"}
    assert tiers == {1} and "fallback" not in actions(decided, "ollama_model")


def test_a_reopened_breaker_moves_down_from_its_own_fallback():
    config = SafetyConfig.model_validate({"breakers": {
        "checkout_api": {"failure_threshold": 1, "timeout": "10s", "fallback": "cached_checkout",
                         "match": [{"kinds": ["error_rate_spike"], "subject": {"service": "checkout"}}]}}})

    def fallbacks_after_reopening(target: str, kind: str, subject: dict, observed: float) -> list:
        engine, seen = SafetyEngine(config), []
        for number, now in enumerate((0.0, 61.0, 122.0)):  # open, then twice a fresh failure while half-open
            decided = engine.handle(event(kind, "firing", subject, observed, episode=f"{target}-{number}"), now)
            seen += [d["state"]["fallback"] for d in decided if d["target"] == target and d["action"] == "fallback"]
            assert actions(engine.tick(now + 60), target) == ["breaker_half_open"]
        return seen

    assert fallbacks_after_reopening("database", "dependency_failure", POSTGRES, 4) == ["cache_only", "offline_mode"]
    assert fallbacks_after_reopening("external_api", "dependency_failure", {"dependency": "stripe"}, 10) == [
        "offline_mode"]
    assert fallbacks_after_reopening("checkout_api", "error_rate_spike", {"service": "checkout"}, 0.3) == [
        "cached_checkout"]  # a fallback outside the chain is the only one: it is kept


def test_one_event_that_opens_two_breakers_records_every_decision():
    engine = SafetyEngine(SafetyConfig())
    decided = engine.handle(event("dependency_failure", "firing", POSTGRES, observed=12), 0.0)
    # database (postgres, threshold 3) and external_api (any dependency failure, threshold 10)
    assert actions(decided, "database") == ["breaker_open", "fallback"]
    assert actions(decided, "external_api") == ["breaker_open", "fallback"]
    assert len({d["id"] for d in decided}) == len(decided)
    assert engine.handle(event("dependency_failure", "firing", POSTGRES, observed=12), 1.0) == []


def test_an_operator_resets_a_breaker_and_lifts_a_throttle():
    engine = SafetyEngine(SafetyConfig())
    engine.handle(event("dependency_failure", "firing", POSTGRES, observed=4), 0.0)
    engine.handle(event("cost_budget", "firing", {"service": "planner"}, 10.5, "usd", episode="daily"), 0.0)
    reset = engine.reset_breaker("database", "alice", "postgres was restarted", "req-1", 5.0)
    assert actions(reset) == ["breaker_close", "fallback"]
    assert all(d["requested_by"] == "alice" and d["cause"]["kind"] == "admin" for d in reset)
    assert reset[0]["reason"] == "breaker database: reset by alice: postgres was restarted"
    assert engine.state.breakers["database"].state == "closed" and engine.state.breakers["database"].tier == 0
    assert run_ticks(engine, 6.0, 100.0) == []  # nothing left to time out

    [lifted] = engine.lift_throttle("service=planner", "bob", "", "req-2", 6.0)
    assert lifted["action"] == "unthrottle" and lifted["requested_by"] == "bob" and engine.state.throttles == {}
    assert engine.reset_breaker("database", "alice", "", "req-1", 7.0) == []  # the same request again
    for doc in [*reset, lifted]:
        validate(doc)


def test_a_breaker_removed_from_the_config_is_dropped_from_a_restored_state():
    engine = SafetyEngine(SafetyConfig())
    engine.handle(event("dependency_failure", "firing", POSTGRES, observed=4), 0.0)
    config = SafetyConfig.model_validate({"breakers": {"database": None}})
    assert set(restarted(engine, config).state.breakers) == {"ollama_model", "external_api"}


def test_restored_episodes_keep_trusts_the_episodes_of_an_earlier_run(tmp_path):
    """`restored_episodes: keep` (a safety consumer whose collector kept running): the restored
    breaker stays on its fallback while its episode is firing, and closes on its resolution."""
    state = tmp_path / "safety.json"
    engine = SafetyEngine(SafetyConfig())
    engine.handle(event("dependency_failure", "firing", POSTGRES, observed=4, episode="ep"), 0.0)
    state.write_text(json.dumps({**engine.state.to_json(), "run": "an earlier run"}))
    settings = Settings.make(Kind.PROCESSOR, ComponentID("safety"), Signal.EVENTS)
    for mode, second_tick in (("keep", ["breaker_open"]), ("probe", ["breaker_close"])):
        safety = SafetyProcessor(settings, SafetyConfig(state_file=str(state), restored_episodes=mode), None)
        restored = safety.engine
        assert actions(restored.tick(10.0), "database") == ["breaker_half_open"]
        assert actions(restored.tick(20.0), "database") == second_tick, mode

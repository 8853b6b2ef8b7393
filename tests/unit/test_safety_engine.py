"""The safety engine's state machines, driven by hand-made trigger events."""
from __future__ import annotations

from pipeline.documents import stable_id
from processors.safety.config import SafetyConfig
from processors.safety.engine import SafetyEngine, SafetyState


def event(kind: str, status: str, subject: dict, observed: float = 1.0, unit: str = "count",
          episode: str = "ep1", **extra) -> dict:
    return {"schema": "agentdbg.trigger/v1", "id": stable_id(episode, status), "episode": episode, "kind": kind,
            "status": status, "severity": "critical", "subject": subject,
            "subject_key": ",".join(f"{k}={v}" for k, v in subject.items()), "observed": observed,
            "threshold": 3, "unit": unit, "message": f"{kind} {status}", "first_seen": "2026-11-24T00:00:00Z",
            **extra}


def actions(decisions: list[dict], target=None) -> list[str]:
    return [d["action"] for d in decisions if target is None or d["target"] == target]


def test_breaker_opens_half_opens_and_closes_with_fallback():
    engine = SafetyEngine(SafetyConfig())
    opened = engine.handle(event("dependency_failure", "firing", {"dependency": "postgres"}, observed=4), 100.0)
    assert actions(opened, "database") == ["breaker_open", "fallback"]
    fallback = [d for d in opened if d["action"] == "fallback"][0]
    assert fallback["state"] == {"state": "open", "tier": 1, "fallback": "cache_only", "open_until": 110.0}
    assert engine.tick(105.0) == []
    assert actions(engine.tick(110.0), "database") == ["breaker_half_open"]
    closed = engine.handle(event("dependency_failure", "resolved", {"dependency": "postgres"}), 111.0)
    assert actions(closed, "database") == ["breaker_close"]
    assert engine.state.breakers["database"].state == "closed"
    # one quiet timeout later it steps back from the fallback to the primary
    step = engine.tick(121.5)
    assert actions(step, "database") == ["fallback"] and step[0]["state"]["fallback"] is None


def test_breaker_below_threshold_stays_closed_and_reopen_moves_down_a_tier():
    engine = SafetyEngine(SafetyConfig())
    assert actions(engine.handle(event("dependency_failure", "firing", {"provider": "ollama"}, observed=4), 0),
                   "ollama_model") == []
    opened = engine.handle(event("dependency_failure", "firing", {"provider": "ollama"}, observed=2,
                                 episode="ep2"), 1)
    assert actions(opened, "ollama_model") == ["breaker_open", "fallback"]
    engine.tick(31)  # half-open, episodes still firing
    again = engine.handle(event("dependency_failure", "firing", {"provider": "ollama"}, episode="ep3"), 32)
    assert actions(again, "ollama_model") == ["breaker_open", "fallback"]
    assert [d for d in again if d["target"] == "ollama_model"][-1]["state"]["fallback"] == "cache_only"


def test_redelivered_event_decides_nothing_new():
    engine = SafetyEngine(SafetyConfig())
    first = engine.handle(event("error_rate_spike", "firing", {"service": "checkout"}, 0.2, "ratio"), 0)
    assert actions(first) == ["alert"]
    assert engine.handle(event("error_rate_spike", "firing", {"service": "checkout"}, 0.2, "ratio"), 1) == []


def test_state_survives_a_json_round_trip():
    engine = SafetyEngine(SafetyConfig())
    engine.handle(event("dependency_failure", "firing", {"dependency": "postgres"}, observed=5), 0)
    restored = SafetyEngine(SafetyConfig(), SafetyState.from_json(engine.state.to_json()))
    assert restored.state.breakers["database"].state == "open"
    assert restored.handle(event("dependency_failure", "firing", {"dependency": "postgres"}, observed=5), 1) == []


def test_canary_rolls_back_once_and_a_healthy_one_is_promoted():
    engine = SafetyEngine(SafetyConfig())
    subject = {"service": "planner", "service_version": "2.0", "canary": True}
    bad = event("health_snapshot", "snapshot", subject, episode="s1",
                metrics={"error_rate": 0.15, "latency_p95_s": 0.3, "memory_bytes": 1e8, "spans": 200})
    decided = engine.handle(bad, 0)
    assert actions(decided) == ["rollback"] and "error rate 15.0%" in decided[0]["reason"]
    assert engine.handle({**bad, "id": "other"}, 5) == []
    good = {"error_rate": 0.01, "latency_p95_s": 0.2, "memory_bytes": 1e8, "spans": 200}
    healthy = {"service": "planner", "service_version": "3.0", "canary": True}
    assert engine.handle(event("health_snapshot", "snapshot", healthy, episode="h1", metrics=good), 0) == []
    promoted = engine.handle(event("health_snapshot", "snapshot", healthy, episode="h2", metrics=good), 601)
    assert actions(promoted) == ["promote"]


def test_cost_budget_throttles_then_unthrottles_at_rollover():
    engine = SafetyEngine(SafetyConfig.model_validate({"cost": {"prefer": "gpt-4o-mini"}}))
    fired = engine.handle(event("cost_budget", "firing", {"service": "planner"}, 10.5, "usd"), 0)
    assert actions(fired) == ["throttle", "fallback", "alert"]
    assert fired[0]["state"]["rate_per_minute"] == 1000 and fired[0]["state"]["burst_per_second"] == 100
    resolved = engine.handle(event("cost_budget", "resolved", {"service": "planner"}, 10.5, "usd"), 86400)
    assert actions(resolved) == ["unthrottle", "resolve_alert"]


def test_alert_carries_the_product_class_and_subject_labels():
    engine = SafetyEngine(SafetyConfig())
    [alert] = engine.handle(event("performance_degradation", "firing", {"service": "s", "span_name": "x"},
                                  2.5, "seconds"), 0)
    assert alert["state"]["labels"] == {"alertname": "slow_response", "severity": "warning",
                                        "kind": "performance_degradation", "service": "s", "span_name": "x"}


def test_throttle_lasts_until_every_cost_episode_of_the_target_resolved():
    engine = SafetyEngine(SafetyConfig())
    subject = {"service": "planner"}
    daily = event("cost_budget", "firing", subject, 10.5, "usd", episode="daily@1")
    assert actions(engine.handle(daily, 0)) == ["throttle", "alert"]
    assert actions(engine.handle(event("cost_budget", "firing", subject, 240.0, "usd", episode="burn"), 1)) == [
        "alert"]
    # The burn rate calms down while the daily budget is still spent: still throttled.
    assert actions(engine.handle(event("cost_budget", "resolved", subject, 240.0, "usd", episode="burn"), 3600)) == [
        "resolve_alert"]
    assert "service=planner" in engine.state.throttles
    resolved = engine.handle(event("cost_budget", "resolved", subject, 10.5, "usd", episode="daily@1"), 86400)
    assert actions(resolved) == ["unthrottle", "resolve_alert"]
    assert engine.state.throttles == {}


def test_a_throttle_from_an_older_state_file_is_lifted_by_its_episode():
    engine = SafetyEngine(SafetyConfig(), SafetyState.from_json({"throttles": {"service=planner": {
        "rate_per_minute": 1000, "burst_per_second": 100, "fallback": None, "since": 0, "episode": "old"}}}))
    resolved = engine.handle(event("cost_budget", "resolved", {"service": "planner"}, 10.5, "usd", episode="old"), 1)
    assert actions(resolved) == ["unthrottle", "resolve_alert"]


def test_a_partial_breaker_keeps_the_default_match_rules_and_null_removes_one():
    config = SafetyConfig.model_validate({"breakers": {"database": {"timeout": "5s"}, "external_api": None,
                                                       "llm": {"match": [{"kinds": ["error_rate_spike"]}]}}})
    assert set(config.breakers) == {"ollama_model", "database", "llm"}
    assert config.breakers["database"].timeout == 5 and config.breakers["database"].match
    assert config.breakers["database"].failure_threshold == 3


def test_a_breaker_without_match_rules_is_a_config_error():
    import pydantic
    import pytest

    with pytest.raises(pydantic.ValidationError, match="at least one match rule"):
        SafetyConfig.model_validate({"breakers": {"new_one": {"failure_threshold": 2}}})


def test_cost_warnings_alert_without_throttling():
    engine = SafetyEngine(SafetyConfig())
    warning = {**event("cost_budget", "firing", {"service": "planner"}, 8.1, "usd", episode="d80"),
               "severity": "warning"}
    assert actions(engine.handle(warning, 0)) == ["alert"]
    assert engine.state.throttles == {}


def test_candidates_share_decided_ids_only_once_committed():
    engine = SafetyEngine(SafetyConfig())
    fire = event("error_rate_spike", "firing", {"service": "checkout"}, 0.2, "ratio")
    dropped = engine.copy()
    assert actions(dropped.handle(fire, 0)) == ["alert"]  # never committed: as if the export failed
    kept = engine.copy()
    assert actions(kept.handle(fire, 1)) == ["alert"]
    kept.commit()
    assert actions(kept.copy().handle(fire, 2)) == []


def test_tick_due_says_when_a_transition_is_waiting():
    engine = SafetyEngine(SafetyConfig())
    assert not engine.tick_due(0)
    engine.handle(event("dependency_failure", "firing", {"dependency": "postgres"}, observed=4), 100.0)
    assert not engine.tick_due(105.0) and engine.tick_due(110.0)

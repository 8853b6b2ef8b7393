"""Acceptance 1 of the safety consumer: the whole chain with real parts (testkit/safety_chain.py).

OpenTelemetry SDK agents → collector daemon (triggers connector, short windows) → Apache Kafka →
safety daemon (config/safety.yaml, short breaker timeout and canary hold) → the decisions
topic, a real Alertmanager and webhooks served by the test. The tests share the running
chain; each plays its own services, so they do not see each other's faults:

- a failing dependency (client spans to postgres timing out): the `database` breaker
  opens, a `fallback` decision goes out on the topic and to the webhook, the breaker
  half-opens after its timeout while the fault lasts, closes once the fault stops and its
  episode resolves, and one quiet timeout later steps back to the primary;
- a canary with 15 % errors beside a healthy one: exactly one `rollback` webhook call for
  it (later bad snapshots change nothing), a `promote` for the healthy canary;
- a budget overrun: `throttle` (with the cheap fallback model) on the topic, the webhook and
  /debug/throttles, kept while the daily budget is still spent after the burn-rate episode
  resolves;
- an error spike: the alert active in Alertmanager, resolved after the spike stops; a
  healthy service beside it raises nothing.

Every test ends by checking that no webhook call repeated an Idempotency-Key. Nothing here
asserts on timing: the waits only bound how long a broken chain takes to fail.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from opentelemetry.trace import SpanKind

from tests.conftest import require_binary
from testkit.harness import wait_until
from testkit.safety_chain import ACTIONS_HOOK, DECISIONS_TOPIC, ROLLBACK_HOOK, TRIGGERS_TOPIC, SafetyChain
from testkit.trigger_helpers import SdkAgent

TRIGGERS = """\
      evaluation_interval: 100ms
      resolve_after: 1s
      allowed_lateness: 300ms
      error_rate_spike: {window: 2s, min_count: 20}
      dependency_failure: {window: 1s}
      cost_budget: {daily_budget: 1.0, monthly_budget: 30.0, burn_window: 2s}
      health_snapshot: {snapshot_interval: 500ms}
"""
# The database breaker's timeout is well over what a stopped fault takes to resolve (1 s
# window + 1 s resolve_after + 0.3 s allowed_lateness: the default 5 s lateness would hold every
# resolution past the timeout), so a half-open breaker closes rather than re-opening a tier down.
SAFETY = """\
      tick_interval: 100ms
      breakers:
        database:
          failure_threshold: 3
          timeout: 5s
          fallback: cache_only
          match: [{kinds: [dependency_failure], subject: {dependency: postgres}}]
      canary:
        success: {hold_for: 2s}
"""
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, kafka_session_broker) -> Iterator[SafetyChain]:
    workdir: Path = tmp_path_factory.mktemp("safety-e2e")
    with SafetyChain(workdir, TRIGGERS, SAFETY, require_binary("prometheus-alertmanager"),
                     broker=kafka_session_broker) as running:
        yield running
    kafka_session_broker.reset()  # this module's topics go, as after any test


def assert_each_key_once(chain: SafetyChain) -> None:
    repeated = {key: n for key, n in Counter(chain.hooks.keys()).items() if n > 1}
    assert not repeated, f"webhook calls repeated an Idempotency-Key: {repeated}"


def wait(predicate: Callable[[], Any], message: str, chain: SafetyChain, timeout: float = 20.0) -> Any:
    try:
        return wait_until(predicate, timeout=timeout, interval=0.1, message=message)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{chain.logs()[-6000:]}") from None


def on_topic(chain: SafetyChain, keep: Callable[[dict[str, Any]], bool], count: int, message: str
             ) -> list[dict[str, Any]]:
    """The decisions on agent.safety.decisions that `keep` selects, once there are `count`.
    (The exporters run side by side: a webhook or Alertmanager can be served before the
    topic's consumer has read the same decision.)"""
    def found() -> list[dict[str, Any]] | None:
        kept = [d for d in chain.decisions() if keep(d)]
        return kept if len(kept) >= count else None
    return wait(found, message, chain)


def actions_for(chain: SafetyChain, target: Any, path: str = ACTIONS_HOOK) -> list[str]:
    return [c["body"]["action"] for c in chain.hook_calls(path) if c["body"]["target"] == target]


# -- (a) a failing dependency ---------------------------------------------------------------------
def postgres_timeouts(agent: SdkAgent, count: int = 6) -> None:
    """`count` queries that timed out after 5 s, and as many healthy ones beside them."""
    now = time.time()
    for _ in range(count):
        agent.span("SELECT bookings", now - 5, now, SpanKind.CLIENT, error="canceling statement due to statement timeout",
                   **{"peer.service": "postgres", "db.system": "postgresql", "error.type": "TimeoutError"})
        agent.span("SELECT rooms", now - 0.01, now, SpanKind.CLIENT, **{"peer.service": "postgres"})
    agent.flush()


class LastingFault:
    """A fault that lasts until stopped: `act` again every `every` seconds, in a thread."""

    def __init__(self, act: Callable[[], None], every: float = 0.2) -> None:
        self.act, self.every = act, every
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fault", daemon=True)

    def _run(self) -> None:
        while not self.stopped.is_set():
            self.act()
            self.stopped.wait(self.every)

    def __enter__(self) -> "LastingFault":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(10)


def breaker(chain: SafetyChain) -> dict[str, Any]:
    return chain.debug("breakers")["database"]


def test_failing_dependency_opens_the_breaker_which_half_opens_and_closes(chain: SafetyChain) -> None:
    agent = chain.agent("booking-agent")
    with LastingFault(lambda: postgres_timeouts(agent)):
        wait(lambda: breaker(chain)["state"] == "open", "the database breaker open", chain)
        opened = breaker(chain)
        assert (opened["tier"], opened["fallback"]) == (1, "cache_only") and opened["open_until"] is not None

        # The agents' clients learn it from the decisions topic (keyed by breaker) and the webhook.
        [fallback] = wait(lambda: [r for r in chain.tail.records(DECISIONS_TOPIC)
                                   if r.json()["action"] == "fallback" and r.json()["target"] == "database"],
                          "a fallback decision for the database on agent.safety.decisions", chain)
        decision = fallback.json()
        assert fallback.key == b"database"
        assert decision["schema"] == "agentdbg.decision/v1"
        assert decision["state"] == {"state": "open", "tier": 1, "fallback": "cache_only",
                                     "open_until": opened["open_until"]}
        assert decision["cause"]["kind"] == "dependency_failure"
        assert decision["cause"]["subject_key"] == "service=booking-agent,dependency=postgres"
        assert decision["cause"]["observed"] > decision["cause"]["threshold"] == 3
        # The collector published its cause keyed by subject, as the safety daemon read it.
        [cause] = [r for r in chain.tail.records(TRIGGERS_TOPIC) if r.json()["id"] == decision["cause"]["event_id"]]
        assert cause.key == b"service=booking-agent,dependency=postgres"
        assert (cause.json()["schema"], cause.json()["status"]) == ("agentdbg.trigger/v1", "firing")
        [hooked] = wait(lambda: [c["body"] for c in chain.hook_calls(ACTIONS_HOOK, "fallback")
                                 if c["body"]["target"] == "database"], "the fallback at the webhook", chain)
        assert hooked == decision

        # The fault lasts: after the timeout the breaker half-opens to try the primary again.
        wait(lambda: breaker(chain)["state"] == "half_open", "the breaker half-open after its timeout", chain)
    # The fault stops: its episode resolves and the breaker closes, still on the fallback tier ...
    wait(lambda: breaker(chain)["state"] == "closed", "the breaker closed after recovery", chain)
    assert breaker(chain)["tier"] == 1
    # ... which it leaves for the primary after one quiet timeout.
    wait(lambda: breaker(chain)["tier"] == 0, "the breaker back on the primary", chain)

    assert actions_for(chain, "database") == ["breaker_open", "fallback", "breaker_half_open", "breaker_close",
                                              "fallback"]
    published = on_topic(chain, lambda d: d["target"] == "database", 5, "every breaker decision on the topic")
    assert [d["action"] for d in published] == actions_for(chain, "database")
    assert published[3]["reason"] == "breaker database: every episode that opened it has resolved"
    assert published[3]["cause"]["kind"] == "dependency_failure"
    assert published[4]["state"] == {"state": "closed", "tier": 0, "fallback": None, "open_until": None}
    assert_each_key_once(chain)


# -- (b) canaries -----------------------------------------------------------------------------------
def requests_of(agent: SdkAgent, count: int, errors: int) -> None:
    """`count` server spans, `errors` of them failed, spread evenly; one OTLP export."""
    now = time.time()
    failed = {round(i * count / errors) for i in range(errors)} if errors else set()
    for i in range(count):
        agent.span("POST /chat", now - 0.05, now, SpanKind.SERVER, error="upstream failed" if i in failed else None)
    agent.flush()


def canary(chain: SafetyChain, version: str) -> dict[str, Any] | None:
    return chain.debug("canaries").get(f"chat-api@{version}")


def test_canary_with_15_percent_errors_is_rolled_back_once(chain: SafetyChain) -> None:
    baseline = chain.agent("chat-api", **{"service.version": "1.0"})
    faulty = chain.agent("chat-api", **{"service.version": "2.0", "deployment.canary": True})
    healthy = chain.agent("chat-api", **{"service.version": "3.0", "deployment.canary": True})
    requests_of(baseline, 100, 1)
    requests_of(faulty, 100, 15)

    def healthy_traffic_until_decided() -> bool:
        requests_of(healthy, 20, 0)
        states = canary(chain, "2.0"), canary(chain, "3.0")
        return all(state and state["phase"] != "analysing" for state in states)

    wait(healthy_traffic_until_decided, "both canaries decided", chain)
    rolled_back, promoted = canary(chain, "2.0"), canary(chain, "3.0")
    assert rolled_back["phase"] == "rolled_back" and rolled_back["last_metrics"]["error_rate"] == pytest.approx(0.15)
    assert promoted["phase"] == "promoted"
    assert canary(chain, "1.0") is None, "the baseline is not a canary"

    [call] = chain.hook_calls(ROLLBACK_HOOK, "rollback")
    rollback = call["body"]
    assert rollback["target"] == {"service": "chat-api", "version": "2.0"}
    assert rollback["state"] == {"phase": "rolled_back"}
    assert rollback["cause"]["kind"] == "health_snapshot" and rollback["cause"]["observed"] == pytest.approx(0.15)
    assert "error rate 15.0% > 10%" in rollback["reason"]
    assert call["headers"]["Idempotency-Key"] == rollback["id"]
    [promote] = chain.hook_calls(ROLLBACK_HOOK, "promote")
    assert promote["body"]["target"] == {"service": "chat-api", "version": "3.0"}

    # The canary keeps failing, worse: its later snapshots are read, but it was decided once.
    requests_of(faulty, 40, 20)
    wait(lambda: canary(chain, "2.0")["last_metrics"]["spans"] == 40, "a later snapshot of the canary read",
         chain)
    assert canary(chain, "2.0")["phase"] == "rolled_back"
    assert [c["body"]["target"] for c in chain.hook_calls(ROLLBACK_HOOK)] == [
        {"service": "chat-api", "version": "2.0"}, {"service": "chat-api", "version": "3.0"}]
    rollbacks = on_topic(chain, lambda d: d["action"] == "rollback", 1, "the rollback on the topic")
    assert [d["target"]["version"] for d in rollbacks] == ["2.0"]
    assert_each_key_once(chain)


# -- (c) a budget overrun ---------------------------------------------------------------------------
def test_budget_overrun_throttles_until_the_period_rolls_over(chain: SafetyChain) -> None:
    spender = chain.agent("research-agent")
    now = time.time()
    for _ in range(12):  # $1.20 against the $1.00 daily budget
        spender.span("chat gpt-4o", now - 1, now, SpanKind.CLIENT, **{
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.cost": 0.10})
    spender.flush()
    target = "service=research-agent"
    throttled = wait(lambda: chain.debug("throttles").get(target), "the agent throttled (/debug/throttles)", chain)
    assert (throttled["rate_per_minute"], throttled["burst_per_second"], throttled["fallback"]) == (
        1000, 100, "tinyllama")
    assert actions_for(chain, target) == ["throttle", "fallback"]
    throttle, cheap = on_topic(chain, lambda d: d["target"] == target, 2, "throttle and fallback on the topic")
    assert (throttle["action"], cheap["action"]) == ("throttle", "fallback")
    assert throttle["state"] == {"rate_per_minute": 1000, "burst_per_second": 100, "fallback": "tinyllama"}
    assert throttle["cause"]["kind"] == "cost_budget" and throttle["cause"]["subject_key"] == target
    assert cheap["state"]["fallback"] == "tinyllama"

    # The spending stops: the burn-rate episode resolves (its 2 s window empties), the daily
    # budget stays spent until the day rolls over, and so the throttle stays.
    wait(lambda: [d for d in chain.debug("decisions") if d["action"] == "resolve_alert"
                  and d["cause"]["subject_key"] == target], "the burn-rate episode resolved and acted on", chain)
    cost_events = [e for e in chain.trigger_events() if e["kind"] == "cost_budget" and e["subject_key"] == target]
    burn = [e for e in cost_events if "a day at that rate" in e["message"]]
    daily = [e for e in cost_events if "daily budget for" in e["message"]]
    assert [e["status"] for e in burn] == ["firing", "resolved"]
    assert [e["status"] for e in daily] == ["firing", "firing"]  # at 80 % and at 100 %, until the day ends
    assert target in chain.debug("throttles")
    assert [d for d in chain.decisions("unthrottle") if d["target"] == target] == []
    # Alertmanager knows an alert by its label set, which the three episodes share: the alert
    # stays active while the daily ones fire.
    [high_cost] = chain.alertmanager.active(alertname="high_cost", service="research-agent")
    assert high_cost["labels"]["severity"] == "warning"
    assert_each_key_once(chain)


# -- (d) an error spike ----------------------------------------------------------------------------
def test_error_spike_alert_fires_in_alertmanager_then_resolves(chain: SafetyChain) -> None:
    steady, spiking = chain.agent("steady-agent"), chain.agent("support-agent")
    requests_of(steady, 60, 1)
    requests_of(spiking, 60, 30)
    [alert] = wait(lambda: chain.alertmanager.active(alertname="error_rate_high", service="support-agent"),
                   "error_rate_high active in Alertmanager", chain)
    assert alert["labels"] == {"alertname": "error_rate_high", "severity": "critical", "kind": "error_rate_spike",
                               "service": "support-agent"}
    assert "50.0% of 60 spans failed" in alert["annotations"]["summary"]
    assert alert["annotations"]["threshold"] == "0.05"
    # The spike stops: the alert resolves (the window empties, then resolve_after passes).
    wait(lambda: not chain.alertmanager.active(service="support-agent"), "the alert resolved in Alertmanager", chain)
    assert chain.alertmanager.active(service="steady-agent") == []
    published = on_topic(chain, lambda d: d["cause"]["subject_key"] == "service=support-agent", 2,
                         "the alert decisions on the topic")
    assert [d["action"] for d in published] == ["alert", "resolve_alert"]
    assert_each_key_once(chain)

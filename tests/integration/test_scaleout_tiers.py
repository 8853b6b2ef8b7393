"""Scale-out through real Kafka (issue 16): 3 collector daemons publishing the detector input keyed
by subject (config/collector.yaml's kafka/by_* exporters), 2 evaluator daemons running the
shipped config/evaluator.yaml, against one daemon alone running every detector on the same spans.

The labelled faults are the detection-latency set (evaluation/detection_latency.py: an error
burst, a slow-down after a baseline, a tool loop, dependency timeouts, a context overflow, a
blocked agent), each on a fresh service, plus a budget spent in three parts, and healthy
traffic. Every request is cut into pieces that go round-robin to the 3 collectors, so no
collector sees a whole fault (the tool loop's five calls, the four timeouts, the three payments
land on different collectors); the same pieces go to the single daemon in the same order.
What a user checks: the trigger events on agent.triggers, as (kind, subject, status), are the
same set from the tiers as from the one daemon, and the split budget fires at the same totals;
then one evaluator is SIGKILLed mid-run: its partitions move to the other, which restores their
state from the changelog, so counts started before the kill complete after it, and an episode
opened before it resolves after it under the same id, raised once.
Windows are short in the overlay (seconds, not minutes) so that episodes also resolve.
"""
from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from evaluation.detection_latency import FAULTS, HISTORY_SETTLE, blocked_agent
from pipeline.partitioning import partition_of
from testkit.harness import BASE_CONFIG, ROOT, Daemon, wait_until
from testkit.kafka_broker import TopicTail
from testkit.trigger_helpers import CLIENT, SERVER, resource, span

FAMILIES = ("trace", "session", "service", "dependency", "budget")
PARTITIONS = 4
COLLECTORS, EVALUATORS = 3, 2
SINGLE_TOPIC = "agent.triggers.single"
# The same short windows for the one daemon and for every evaluator's connector (dependency_failure
# keeps its 60 s: the kill test counts timeouts across the fail-over).
TRIGGERS = {
    "evaluation_interval": "100ms", "resolve_after": "1s",
    "error_rate_spike": {"window": "4s"},
    "infinite_loop": {"window": "4s"}, "performance_degradation": {"window": "4s"},
    "deadlock": {"decision_wait": "1s"},
}


def shipped(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "config" / name).read_text())


def collector_overlay(brokers: str) -> str:
    """otlp → genai → batch → the shipped collector's keyed exporters (queues in memory here)."""
    exporters = {cid: {**body, "brokers": [brokers], "sending_queue": {"enabled": True}}
                 for cid, body in shipped("collector.yaml")["exporters"].items() if cid.startswith("kafka/by_")}
    return yaml.safe_dump({
        "processors": {"genai": {}, "batch": {"timeout": "100ms"}},
        "exporters": exporters,
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["genai", "batch"],
                                             "exporters": sorted(exporters)}}}})


def evaluator_overlay() -> str:
    """The short windows in each family's connector (for the detectors it runs; the others stay
    off, as shipped); short consumer sessions."""
    evaluator = shipped("evaluator.yaml")
    connectors = {}
    for cid, body in evaluator["connectors"].items():
        off = {detector for detector, block in (body or {}).items() if block == {"enabled": False}}
        connectors[cid] = {key: value for key, value in TRIGGERS.items() if key not in off}
        connectors[cid]["checkpoint"] = {"interval": "200ms"}
    receivers = {cid: {"session_timeout": "3s", "heartbeat_interval": "500ms"} for cid in evaluator["receivers"]}
    return yaml.safe_dump({"connectors": connectors, "receivers": receivers})


def single_overlay(brokers: str) -> str:
    return yaml.safe_dump({
        "processors": {"genai": {}, "batch": {"timeout": "100ms"}},
        "connectors": {"triggers": TRIGGERS},
        "exporters": {"kafka/events": {"brokers": [brokers], "topic": SINGLE_TOPIC}},
        "service": {"pipelines": {
            "traces": {"receivers": ["otlp"], "processors": ["genai", "batch"], "exporters": ["triggers"]},
            "events": {"receivers": ["triggers"], "exporters": ["kafka/events"]}}}})


def evaluator(brokers: str, number: int) -> Daemon:
    daemon = Daemon((ROOT / "config" / "evaluator.yaml").read_text(), overlay=evaluator_overlay())
    daemon.env = {"KAFKA_BROKERS": brokers, "AGENTDBG_EVALUATOR_ID": f"evaluator-{number}",
                  "AGENTDBG_HEALTH_ENDPOINT": f"127.0.0.1:{daemon.ports['health']}",
                  "AGENTDBG_DEBUG_ENDPOINT": f"127.0.0.1:{daemon.ports['debug']}",
                  "AGENTDBG_METRICS_ADDRESS": f"127.0.0.1:{daemon.ports['metrics']}",
                  "AGENTDBG_DEBUG_TOKEN": "evaluator-test-token"}
    return daemon


def assignments(daemon: Daemon) -> dict[str, set[int]]:
    """Each consumer group's partitions as the daemon last logged them."""
    latest: dict[str, set[int]] = {}
    for line in daemon.log().splitlines():
        if '"partitions assigned"' not in line:
            continue
        entry = json.loads(line)
        parts = {int(p) for item in entry["partitions"].split() for p in item.partition(":")[2].split(",")}
        latest[entry["group"]] = parts
    return latest


def groups_balanced(evaluators: list[Daemon]) -> bool:
    """Every family's group has its partitions split among all the evaluators, none twice."""
    seen = [assignments(e) for e in evaluators]
    for family in FAMILIES:
        group = f"agentdbg-evaluator-{family}"
        held = [s.get(group, set()) for s in seen]
        if not all(held) or sum(map(len, held)) != PARTITIONS or set().union(*held) != set(range(PARTITIONS)):
            return False
    return True


class Tier:
    def __init__(self, daemons: list[Daemon], tail: TopicTail) -> None:
        self.daemons, self.tail = daemons, tail
        self.collectors, self.single = daemons[EVALUATORS:-1], daemons[-1]
        self.turn = 0

    def send(self, payload: bytes, pieces: int) -> None:
        """Cut one request into `pieces` requests (by span); each goes to the next collector, and
        to the single daemon."""
        for part in cut(ExportTraceServiceRequest.FromString(payload), pieces):
            collector = self.collectors[self.turn % len(self.collectors)]
            self.turn += 1
            for daemon in (collector, self.single):
                post(daemon, part)

    def events(self, topic: str) -> list[dict[str, Any]]:
        return [doc for doc in self.tail.documents(topic) if doc.get("kind") != "health_snapshot"]

    def await_same(self, view: Any, message: str, timeout: float = 30) -> None:
        """Until `view(events)` of the tiers equals that of the single daemon; says both if not."""
        try:
            wait_until(lambda: view(self.events("agent.triggers")) == view(self.events(SINGLE_TOPIC)),
                       timeout=timeout, message=message)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: tiers {view(self.events('agent.triggers'))} single "
                                 f"{view(self.events(SINGLE_TOPIC))}; logs: "
                                 f"{[str(d.log_path) for d in self.daemons]}") from None


def cut(message: ExportTraceServiceRequest, pieces: int) -> list[bytes]:
    spans = [(rs, scope, s) for rs in message.resource_spans for scope in rs.scope_spans for s in scope.spans]
    size = max(1, -(-len(spans) // pieces))
    out = []
    for start in range(0, len(spans), size):
        part = ExportTraceServiceRequest()
        for rs, scope, s in spans[start:start + size]:
            target = part.resource_spans.add()
            target.resource.CopyFrom(rs.resource)
            target.scope_spans.add(scope=scope.scope).spans.append(s)
        out.append(part.SerializeToString())
    return out


def post(daemon: Daemon, payload: bytes) -> None:
    response = requests.post(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces", data=payload, timeout=10,
                             headers={"Content-Type": "application/x-protobuf"})
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def tier(kafka_session_broker, tmp_path_factory):
    broker = kafka_session_broker
    for family in FAMILIES:
        broker.create_topic(f"agent.detect.{family}", partitions=PARTITIONS)
    broker.create_topic("agent.triggers", partitions=1)
    broker.create_topic(SINGLE_TOPIC, partitions=1)
    daemons = [evaluator(broker.bootstrap, n) for n in range(EVALUATORS)]
    daemons += [Daemon(BASE_CONFIG, overlay=collector_overlay(broker.bootstrap)) for _ in range(COLLECTORS)]
    daemons.append(Daemon(BASE_CONFIG, overlay=single_overlay(broker.bootstrap)))
    tail = TopicTail(broker, "agent.triggers", SINGLE_TOPIC)
    try:
        for daemon in daemons:  # all at once: each start is mostly imports
            daemon.start(wait=False)
        for daemon in daemons:
            wait_until(daemon.healthy, timeout=180, message=f"daemon health ({daemon.log_path})")
        evaluators = daemons[:EVALUATORS]
        wait_until(lambda: groups_balanced(evaluators), timeout=60, message="both evaluators in every group")
        tail.start()
        yield Tier(daemons, tail)
    finally:
        tail.stop()
        for daemon in daemons:
            daemon.stop()
            daemon.kill()
        broker.reset()


def payment(service: str, usd: float, nth: float) -> bytes:
    call = span("chat gpt-4o", trace=int(nth * 1000) + len(service), start=time.time() - 1, duration=0.5,
                kind=CLIENT, attrs={"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                    "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 100,
                                    "gen_ai.usage.output_tokens": 10, "gen_ai.usage.cost": usd})
    message = ExportTraceServiceRequest()
    message.resource_spans.append(resource(service, [call]))
    return message.SerializeToString()


def healthy(service: str, n: int) -> bytes:
    now = time.time()
    message = ExportTraceServiceRequest()
    message.resource_spans.append(resource(service, [
        span("POST /chat", trace=900_000 + n * 100 + i, start=now - 0.5, duration=0.1, kind=SERVER)
        for i in range(20)]))
    return message.SerializeToString()


def cost_events(docs: list[dict[str, Any]], service: str) -> list[tuple[str, float, float]]:
    return sorted((d["status"], d["threshold"], d["observed"]) for d in docs
                  if d["kind"] == "cost_budget" and d["subject"].get("service") == service)


def outcome(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(d["kind"], d["subject_key"], d["status"]) for d in docs}


def test_split_budget_fires_at_the_same_totals_as_one_daemon(tier):
    service = "split-spender"
    # $4 three times, each on another collector: none sees more than $4 of the $10 daily budget.
    # Each payment waits for the alert it causes, so no two share an evaluation in either setup:
    # the 1st sets off the burn rate ($4 an hour is $96 a day), the 2nd the 80 % alert at $8,
    # the 3rd the 100 % alert at $12.
    for paid, alert in ((4.0, ("firing", 10.0, 96.0)), (8.0, ("firing", 8.0, 8.0)), (12.0, ("firing", 10.0, 12.0))):
        tier.send(payment(service, 4.0, paid), 1)
        wait_until(lambda alert=alert: alert in cost_events(tier.events(SINGLE_TOPIC), service), timeout=30,
                   message=f"the single daemon's alert at ${paid:g}")
        tier.await_same(lambda docs: cost_events(docs, service), f"the tiers' alerts at ${paid:g}")
    fired = cost_events(tier.events("agent.triggers"), service)
    assert {("firing", 10.0, 96.0), ("firing", 8.0, 8.0), ("firing", 10.0, 12.0)} <= set(fired), fired


def test_faults_spread_over_three_collectors_give_the_events_of_one_daemon(tier):
    for n in range(3):
        tier.send(healthy(f"calm-{n}", n), 3)
    expected = set()
    for kind, fault in {**FAULTS, "deadlock": blocked_agent}.items():
        if kind == "cost_budget":
            continue  # the split budget above
        service = f"tiers-{kind}"
        history, trigger = fault(service)
        for payload in history:
            tier.send(payload, 6)
        if history:
            time.sleep(HISTORY_SETTLE)
        tier.send(trigger, 6 if kind != "infinite_loop" else 5)
        expected.add((kind, service))
    for n in range(3):
        tier.send(healthy(f"calm-{n}", n + 10), 3)

    def missing() -> set[tuple[str, str]]:
        return expected - {(d["kind"], d["subject"].get("service")) for d in tier.events(SINGLE_TOPIC)
                           if d["status"] == "firing"}

    try:
        wait_until(lambda: not missing(), timeout=60, message="every fault's event from the single daemon")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: missing {missing()}; log {tier.single.log_path}") from None
    wait_until(lambda: outcome(tier.events("agent.triggers")) == outcome(tier.events(SINGLE_TOPIC))
               and any(d["status"] == "resolved" for d in tier.events(SINGLE_TOPIC)), timeout=60,
               message="the same events from the tiers")
    single, tiers = outcome(tier.events(SINGLE_TOPIC)), outcome(tier.events("agent.triggers"))
    assert tiers == single, {"only single": single - tiers, "only tiers": tiers - single}
    assert not {s for _, s, _ in single if "calm-" in s}, "healthy services raised nothing"


def test_every_family_topic_got_keyed_records(tier, kafka_session_broker):
    """What the collectors published: records keyed by their family's key, every topic used."""
    with TopicTail(kafka_session_broker, *(f"agent.detect.{f}" for f in FAMILIES)) as tail:
        wait_until(lambda: {r.topic for r in tail.records()} == {f"agent.detect.{f}" for f in FAMILIES},
                   timeout=30, message="records on every family topic")
        keys = {f: {r.key for r in tail.records(f"agent.detect.{f}")} for f in FAMILIES}
    assert b"split-spender" in keys["budget"] and all(keys.values())
    assert b"tiers-dependency_failure\x1ftiers-dependency_failure-db" in keys["dependency"]
    assert {b"tiers-error_rate_spike", b"calm-0"} <= keys["service"]


def owned(daemon: Daemon, family: str, prefix: str, key_of: Any) -> str:
    """A fresh service name whose `family` record key is in a partition `daemon` holds."""
    held = assignments(daemon)[f"agentdbg-evaluator-{family}"]
    return next(name for name in (f"{prefix}-{n}" for n in range(1000))
                if partition_of(key_of(name), PARTITIONS) in held)


def timeouts(service: str, count: int, start: int) -> bytes:
    now = time.time()
    message = ExportTraceServiceRequest()
    message.resource_spans.append(resource(service, [
        span("GET", trace=700_000 + start + i, start=now - 1.5, duration=1.0, kind=CLIENT, error=True,
             attrs={"peer.service": f"{service}-db", "error.type": "TimeoutError"}) for i in range(count)]))
    return message.SerializeToString()


def test_a_killed_evaluator_hands_its_subjects_over_with_their_state(tier):
    victim, survivor = tier.daemons[0], tier.daemons[1]
    failing = owned(victim, "service", "kill-errors", str.encode)
    slow_dep = owned(victim, "dependency", "kill-dep", lambda s: f"{s}\x1f{s}-db".encode())
    spender = owned(victim, "budget", "kill-spend", str.encode)
    history, burst = FAULTS["error_rate_spike"](failing)
    tier.send(history[0], 3)
    time.sleep(HISTORY_SETTLE)
    tier.send(burst, 3)
    tier.send(timeouts(slow_dep, 2, 0), 2)  # 2 of the 4 timeouts: under the threshold of 3
    tier.send(payment(spender, 6.0, 1), 1)  # $6 of the $10 daily budget

    def fired(topic: str) -> list[dict[str, Any]]:
        return [d for d in tier.events(topic) if d["subject"].get("service") == failing and d["status"] == "firing"]

    wait_until(lambda: fired("agent.triggers"), timeout=30, message="the error episode, before the kill")
    # The victim's state, with the timeouts and the spend in it, reaches the changelog within the
    # checkpoint interval (200 ms here) once the watermark has passed them (allowed_lateness, 5 s).
    time.sleep(6.5)
    victim.kill()
    wait_until(lambda: groups_balanced([survivor]), timeout=60, message="the survivor holding every partition")
    tier.send(timeouts(slow_dep, 2, 10), 2)  # 4 in the window only if the first 2 were restored
    tier.send(payment(spender, 6.0, 2), 1)   # $12 only if the first $6 was

    kill_subjects = (failing, slow_dep, spender)

    def view(docs: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
        """(kind, subject, status), and for spend the totals too (each payment its own evaluation)."""
        return {(d["kind"], d["subject_key"], d["status"],
                 *((d["threshold"], d["observed"]) if d["kind"] == "cost_budget" else ()))
                for d in docs if d["subject"].get("service") in kill_subjects}

    def single_done() -> bool:
        docs = tier.events(SINGLE_TOPIC)
        seen = {(d["kind"], d["subject"].get("service"), d["status"]) for d in docs}
        return {("dependency_failure", slow_dep, "firing"), ("error_rate_spike", failing, "resolved")} <= seen \
            and ("firing", 10.0, 12.0) in cost_events(docs, spender)

    wait_until(single_done, timeout=60, message="the single daemon's events of the whole run")
    tier.await_same(view, "the same events from the tiers after the kill", timeout=60)
    events = [d for d in tier.events("agent.triggers") if d["subject"].get("service") in kill_subjects]
    kinds = {(d["kind"], d["status"]) for d in events}
    assert ("dependency_failure", "firing") in kinds, "the timeouts counted before the kill were kept"
    assert ("firing", 10.0, 12.0) in cost_events(events, spender), "the spend before the kill was kept"
    firing = [d for d in events if d["subject"].get("service") == failing and d["status"] == "firing"]
    resolved = [d for d in events if d["subject"].get("service") == failing and d["status"] == "resolved"]
    assert len(firing) == 1, "raised once, not again by the new owner"
    assert [d["episode"] for d in resolved] == [firing[0]["episode"]], "resolved under the same episode id"


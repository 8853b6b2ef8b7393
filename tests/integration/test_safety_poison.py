"""The safety consumer (config/safety.yaml's shape: kafka → safety → decisions topic and a
webhook) against trigger events that pass the `agentdbg.*` schema check but have the wrong
types: each is counted, logged with its offset, dead-lettered and committed, and the good
event behind them is decided, before and after a restart."""
from __future__ import annotations

import asyncio
import json

import pytest
from aiokafka import AIOKafkaConsumer

from pipeline.documents import validate
from testkit.harness import BASE_CONFIG, Daemon, wait_until
from tests.integration.test_safety_kafka import OVERLAY, produce, trigger
from testkit.webhook_sink import WebhookSink

TOPICS = ("agent.triggers", "agent.triggers.dlq", "agent.safety.decisions")
POSTGRES = {"dependency": "postgres"}
# The restarted consumer rejoins its group once the broker has dropped the old member. Not
# shorter than 6 s: on a loaded machine a 2 s session expired mid-run, the group rebalanced and
# the commit of the dead-lettered records was refused, so the restarted daemon read them again.
QUICK_REJOIN = """
receivers:
  kafka:
    session_timeout: 6s
    heartbeat_interval: 1s
"""


def safety_daemon(tmp_path, broker, hook: str) -> Daemon:
    overlay = OVERLAY.format(broker=broker.bootstrap, group="safety", state=tmp_path / "state.json", hook=hook)
    return Daemon(BASE_CONFIG, workdir=tmp_path / "safety", overlay=[overlay, QUICK_REJOIN])


def wrong_typed() -> list[dict]:
    good = trigger("dependency_failure", POSTGRES, "bad")
    return [{**good, "subject": "postgres"}, {**good, "subject": ["postgres"]}, {**good, "observed": "many"},
            {**good, "episode": {"id": "bad"}}]


def read_records(broker: str, topic: str, expect: int, timeout: float = 30) -> list:
    """Records of `topic` from the start (value and headers), until `expect` were read."""
    async def run() -> list:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker, auto_offset_reset="earliest",
                                    group_id=None, enable_auto_commit=False)
        await consumer.start()
        out: list = []
        try:
            end = asyncio.get_running_loop().time() + timeout
            while len(out) < expect and asyncio.get_running_loop().time() < end:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    out.extend(records)
        finally:
            await consumer.stop()
        return out
    return asyncio.run(run())


@pytest.fixture
def webhook():
    sink = WebhookSink().start()
    yield sink
    sink.stop()


def acted(webhook: WebhookSink, action: str, target: str) -> bool:
    return any(c["body"]["action"] == action and c["body"]["target"] == target for c in webhook.calls)


def test_wrong_typed_events_are_dead_lettered_and_the_next_one_is_decided(tmp_path, kafka_broker, webhook):
    for topic in TOPICS:
        kafka_broker.create_topic(topic, partitions=1)
    bad = [json.dumps(doc).encode() for doc in wrong_typed()]
    # One event behind them that opens two breakers: database (postgres, 3 failures) and
    # external_api (any dependency failure, 10), each with its own decisions.
    good = trigger("dependency_failure", POSTGRES, "outage", observed=12)
    produce(kafka_broker.bootstrap, "agent.triggers", [*bad, json.dumps(good).encode()])

    with safety_daemon(tmp_path, kafka_broker, webhook.url) as daemon:
        wait_until(lambda: acted(webhook, "breaker_open", "database") and acted(webhook, "breaker_open",
                                                                                "external_api"),
                   timeout=60, message="the event behind the wrong-typed ones was decided, for both breakers")
        assert daemon.metric("agentdbg_kafka_receiver_malformed_messages_total", topic="agent.triggers",
                             reason="invalid_document") == 4
        log = daemon.log()
        for offset, field in enumerate(("subject", "subject", "observed", "episode")):
            line = next(line for line in log.splitlines() if f"offset={offset} " in line or
                        line.endswith(f"offset={offset}"))
            assert "skipping a malformed message" in line and field in line, line
        assert daemon.healthy()

    dead = read_records(kafka_broker.bootstrap, "agent.triggers.dlq", 4)
    assert [r.value for r in dead] == bad
    assert [dict(r.headers)["agentdbg.source"] for r in dead] == [f"agent.triggers/0/{n}".encode() for n in range(4)]
    decisions = [json.loads(r.value) for r in read_records(kafka_broker.bootstrap, "agent.safety.decisions", 5)]
    opened = {(d["action"], d["target"]) for d in decisions if isinstance(d["target"], str)}
    assert {("breaker_open", "database"), ("fallback", "database"), ("breaker_open", "external_api"),
            ("fallback", "external_api")} <= opened
    assert len({d["id"] for d in decisions}) == len(decisions)
    for doc in decisions:
        validate(doc)  # what the daemon publishes is what readers accept

    # After a restart nothing stalls: the dead-lettered records were committed, a new event is decided.
    produce(kafka_broker.bootstrap, "agent.triggers",
            [json.dumps(trigger("error_rate_spike", {"service": "checkout"}, "spike", unit="ratio")).encode()])
    with safety_daemon(tmp_path, kafka_broker, webhook.url) as restarted:
        wait_until(lambda: acted(webhook, "alert", {"alertname": "error_rate_high", "severity": "critical",
                                                    "kind": "error_rate_spike", "service": "checkout"}),
                   timeout=60, message="the event produced after the restart was decided")
        # The webhook is called inside the pipeline, before the receiver counts the record as
        # accepted: wait for the count rather than read it at once.
        wait_until(lambda: restarted.metric("agentdbg_receiver_accepted_events_total") >= 1, timeout=30,
                   message="the decided event counted as accepted")
        assert restarted.metric("agentdbg_receiver_accepted_events_total") == 1
        assert restarted.metric("agentdbg_kafka_receiver_malformed_messages_total") == 0
    assert len(read_records(kafka_broker.bootstrap, "agent.triggers.dlq", 5, timeout=8)) == 4  # and no fifth

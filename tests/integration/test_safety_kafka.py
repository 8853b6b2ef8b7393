"""The safety consumer (config/safety.yaml's shape) reading trigger events from a real Kafka
broker: poison messages, redelivery after SIGKILL, restart without repeated actions."""
from __future__ import annotations

import asyncio
import json
import signal

import pytest
import requests
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from connectors.triggers.event import stable_id
from testkit.harness import BASE_CONFIG, Daemon, wait_until
from testkit.webhook_sink import WebhookSink

OVERLAY = """
receivers:
  kafka:
    brokers: [{broker}]
    topics: [agent.triggers]
    group_id: {group}
    initial_offset: earliest
    encoding: json
    dead_letter_topic: agent.triggers.dlq
processors:
  safety:
    state_file: "{state}"
    tick_interval: 100ms
    breakers:
      database:
        failure_threshold: 3
        timeout: 120s
        fallback: cache_only
        match: [{{kinds: [dependency_failure], subject: {{dependency: postgres}}}}]
exporters:
  kafka/decisions:
    brokers: [{broker}]
    topic: agent.safety.decisions
    sending_queue: {{enabled: false}}
  webhook:
    endpoint: {hook}
    sending_queue: {{enabled: false}}
    retry_on_failure: {{initial_interval: 100ms}}
service:
  pipelines:
    events:
      receivers: [kafka]
      processors: [safety]
      exporters: [kafka/decisions, webhook]
"""


def trigger(kind: str, subject: dict, episode: str, status: str = "firing", **extra) -> dict:
    return {"schema": "agentdbg.trigger/v1", "id": stable_id(episode, status), "episode": episode, "kind": kind,
            "status": status, "severity": "critical", "subject": subject,
            "subject_key": ",".join(f"{k}={v}" for k, v in subject.items()), "observed": 5, "threshold": 3,
            "unit": "count", "message": f"{kind} {status}", "first_seen": "2026-11-24T00:00:00Z", **extra}


def produce(broker: str, topic: str, values: list[bytes]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker, enable_idempotence=True, acks="all")
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(topic, value, key=b"k")
        finally:
            await producer.stop()
    asyncio.run(run())


def read_topic(broker: str, topic: str, expect: int, timeout: float = 10) -> list[bytes]:
    async def run() -> list[bytes]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker, auto_offset_reset="earliest",
                                    group_id=None, enable_auto_commit=False)
        await consumer.start()
        out: list[bytes] = []
        try:
            loop = asyncio.get_running_loop()
            end = loop.time() + timeout
            while len(out) < expect and loop.time() < end:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    out.extend(r.value for r in records)
        finally:
            await consumer.stop()
        return out
    return asyncio.run(run())


@pytest.fixture
def webhook():
    sink = WebhookSink().start()
    yield sink
    sink.stop()


def safety_daemon(tmp_path, broker, hook: str, group: str = "safety") -> Daemon:
    overlay = OVERLAY.format(broker=broker.bootstrap, group=group, state=tmp_path / "state.json", hook=hook)
    return Daemon(BASE_CONFIG, workdir=tmp_path / group, overlay=overlay)


def test_poison_message_is_counted_dead_lettered_and_skipped(tmp_path, kafka_broker, webhook):
    for topic in ("agent.triggers", "agent.triggers.dlq", "agent.safety.decisions"):
        kafka_broker.create_topic(topic, partitions=1)
    produce(kafka_broker.bootstrap, "agent.triggers",
            [b"\x00not json", json.dumps(trigger("dependency_failure", {"dependency": "postgres"}, "e1")).encode()])
    with safety_daemon(tmp_path, kafka_broker, webhook.url) as daemon:
        wait_until(lambda: any(c["body"]["action"] == "breaker_open" for c in webhook.calls), timeout=20,
                   message="the good event after the poison one was acted on")
        assert daemon.metric("agentdbg_kafka_receiver_malformed_messages_total", topic="agent.triggers") == 1
        assert "skipping a malformed message" in daemon.log() and "offset=0" in daemon.log()
    assert read_topic(kafka_broker.bootstrap, "agent.triggers.dlq", 1) == [b"\x00not json"]
    decisions = [json.loads(v) for v in read_topic(kafka_broker.bootstrap, "agent.safety.decisions", 3)]
    assert {"breaker_open", "fallback"} <= {d["action"] for d in decisions}
    assert all(d["schema"] == "agentdbg.decision/v1" for d in decisions)


def test_sigkill_before_commit_repeats_no_action(tmp_path, kafka_broker, webhook):
    for topic in ("agent.triggers", "agent.triggers.dlq", "agent.safety.decisions"):
        kafka_broker.create_topic(topic, partitions=1)
    webhook.hold.clear()  # the hook takes the first call, then keeps the daemon waiting
    produce(kafka_broker.bootstrap, "agent.triggers",
            [json.dumps(trigger("dependency_failure", {"dependency": "postgres"}, "e1")).encode()])
    daemon = safety_daemon(tmp_path, kafka_broker, webhook.url).start()
    try:
        wait_until(lambda: webhook.calls, timeout=20, message="the first action reached the hook")
        daemon.signal(signal.SIGKILL)  # acted, not yet committed
        daemon.proc.wait(10)
    finally:
        daemon.kill()
    webhook.hold.set()
    with safety_daemon(tmp_path, kafka_broker, webhook.url) as restarted:
        debug = f"http://127.0.0.1:{restarted.ports['debug']}/debug"
        wait_until(lambda: requests.get(f"{debug}/breakers", timeout=2).json()["database"]["state"] == "open",
                   timeout=20, message="breaker open after the redelivery")
        wait_until(lambda: len(set(webhook.keys())) >= 3, timeout=10, message="every decision delivered")
    keys = webhook.keys()
    actions = sorted({(c["headers"]["Idempotency-Key"], c["body"]["action"]) for c in webhook.calls})
    assert sorted(a for _, a in actions) == ["alert", "breaker_open", "fallback"], actions
    assert len(keys) - len(set(keys)) <= 1, "only the interrupted call was repeated, with the same key"

    # A restart that replays the whole topic (a new consumer group) repeats nothing: the state file knows.
    before = len(webhook.calls)
    with safety_daemon(tmp_path, kafka_broker, webhook.url, group="replay") as replay:
        wait_until(lambda: replay.metric("agentdbg_receiver_accepted_events_total") >= 1, timeout=20,
                   message="the replayed event was consumed")
        debug = f"http://127.0.0.1:{replay.ports['debug']}/debug"
        assert requests.get(f"{debug}/breakers", timeout=2).json()["database"]["state"] == "open"
    assert len(webhook.calls) == before

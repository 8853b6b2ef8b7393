"""The kafka receiver (encoding json, as the safety consumer runs it) when a stage of its
pipeline fails on one message: after `max_attempts` the message is dead-lettered, counted,
logged with its offset and committed, and every other message is delivered.

The receiver and the broker are real; the failing stage is TEST CODE: it stands for a bug in
any processor or exporter meeting one particular message, a fault no real stage shows once
its own known bugs are fixed (the safety processor sets aside what it cannot decide)."""
from __future__ import annotations

import asyncio
import json
import logging

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.errors import PermanentError
from pipeline.host import Host
from pipeline.telemetry.metrics import REGISTRY
from receivers.kafka import KafkaReceiver, KafkaReceiverConfig
from tests.integration.test_safety_kafka import produce, trigger
from tests.integration.test_safety_poison import read_records

TOPIC, DLQ = "agent.triggers", "agent.triggers.dlq"


class FailsOnPoison:
    """TEST CODE: takes every batch, but raises `error` for any batch holding the poison event."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.taken: list[str] = []
        self.poison_alone = 0  # attempts at a batch of the poison event alone

    async def consume(self, batch) -> None:
        episodes = [doc["episode"] for doc in batch.documents]
        if "poison" in episodes:
            self.poison_alone += episodes == ["poison"]
            raise self.error
        self.taken += episodes


async def consume_until(receiver: KafkaReceiver, stage: FailsOnPoison, want: list[str], timeout: float = 30) -> None:
    await receiver.start(Host())
    try:
        end = asyncio.get_running_loop().time() + timeout
        while stage.taken != want or receiver.done:
            assert asyncio.get_running_loop().time() < end, f"delivered {stage.taken}, wanted {want}"
            await asyncio.sleep(0.1)
    finally:
        await receiver.shutdown()


async def committed(bootstrap: str, group: str) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(TOPIC, 0))
    finally:
        await consumer.stop()


@pytest.mark.parametrize("error, reason, attempts", [(RuntimeError("a bug meets one message"), "error", 2),
                                                     (PermanentError("refused for good"), "permanent", 1)])
def test_a_message_a_stage_keeps_failing_on_is_dead_lettered_and_the_rest_delivered(kafka_broker, caplog, error,
                                                                                    reason, attempts):
    for topic in (TOPIC, DLQ):
        kafka_broker.create_topic(topic, partitions=1)
    events = [json.dumps(trigger("dependency_failure", {"dependency": "postgres"}, name)).encode()
              for name in ("before", "poison", "after")]
    produce(kafka_broker.bootstrap, TOPIC, events)
    config = KafkaReceiverConfig(brokers=[kafka_broker.bootstrap], topics=[TOPIC], group_id=f"g-{reason}",
                                 initial_offset="earliest", encoding="json", dead_letter_topic=DLQ, max_attempts=2)
    receiver = KafkaReceiver(Settings.make(Kind.RECEIVER, ComponentID("kafka", reason)), config)
    stage = FailsOnPoison(error)
    receiver.set_consumer(Signal.EVENTS, stage)

    with caplog.at_level(logging.WARNING, logger="agentdbg"):
        asyncio.run(consume_until(receiver, stage, ["before", "after"]))

    assert stage.poison_alone == attempts  # max_attempts for an error, once for a permanent refusal
    [dead] = read_records(kafka_broker.bootstrap, DLQ, 1)
    assert dead.value == events[1]
    assert dict(dead.headers)["agentdbg.reason"] == reason.encode()
    assert REGISTRY.get_sample_value("agentdbg_kafka_receiver_failed_messages_total", {
        "receiver": f"kafka/{reason}", "topic": TOPIC, "reason": reason}) == 1
    [logged] = [r for r in caplog.records if r.getMessage() == "skipping a message the pipeline failed on"]
    assert logged.kv["offset"] == 1 and logged.kv["partition"] == 0 and logged.kv["topic"] == TOPIC
    assert asyncio.run(committed(kafka_broker.bootstrap, f"g-{reason}")) == 3  # nothing is read again

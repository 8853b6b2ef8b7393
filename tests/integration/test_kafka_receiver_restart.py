"""The kafka receiver when its consumer cannot start: it retries with new clients, for as long
as it takes, instead of dying on aiokafka's "Did you call start twice?" while health stays 200.

The broker is real. It refuses the consumer's session timeout (below the run broker's
`group.min.session.timeout.ms` of 1 s), a start failure that comes half-way through
`AIOKafkaConsumer.start()`: before the fix the second attempt raised AssertionError and the
poll task ended for good."""
from __future__ import annotations

import asyncio
import logging

from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.host import Host
from receivers.kafka import KafkaReceiver, KafkaReceiverConfig


class Takes:
    async def consume(self, batch) -> None:  # never reached: the consumer never starts
        raise AssertionError("nothing should be consumed")


async def run_for_attempts(receiver: KafkaReceiver, caplog, attempts: int, timeout: float = 30.0) -> None:
    await receiver.start(Host())
    try:
        end = asyncio.get_running_loop().time() + timeout
        while sum("cannot start consuming" in r.getMessage() for r in caplog.records) < attempts:
            assert receiver._task is not None and not receiver._task.done(), "the poll task ended"
            assert asyncio.get_running_loop().time() < end, "no retry seen"
            await asyncio.sleep(0.1)
        assert not receiver._task.done()
    finally:
        await receiver.shutdown()


def test_a_consumer_that_cannot_start_is_retried_with_new_clients(kafka_broker, caplog):
    kafka_broker.create_topic("restart.topic", partitions=1)
    config = KafkaReceiverConfig(brokers=[kafka_broker.bootstrap], topics=["restart.topic"], group_id="g-restart",
                                 encoding="json", session_timeout=0.5, heartbeat_interval=0.1)
    receiver = KafkaReceiver(Settings.make(Kind.RECEIVER, ComponentID("kafka", "restart")), config)
    receiver.set_consumer(Signal.EVENTS, Takes())
    with caplog.at_level(logging.WARNING, logger="agentdbg"):
        asyncio.run(run_for_attempts(receiver, caplog, attempts=2))
    assert not [r for r in caplog.records if "stopped consuming" in r.getMessage()]
    assert any("InvalidSessionTimeout" in str(getattr(r, "kv", "")) or "InvalidSessionTimeout" in r.getMessage()
               for r in caplog.records if "cannot start consuming" in r.getMessage())

"""The triggers connector's changelog: a Kafka compacted topic, one record per state key.

`open` creates the topic (`cleanup.policy=compact`) when it is missing. `load` reads every
partition from the start to the end offsets it found when it began (later records are this
instance's own), the last value of a key winning and a tombstone removing it: what Kafka
Streams does to restore a state store. `write` sends the changed records and tombstones
(key = detector + subject key; acks from all in-sync replicas, idempotent) and returns once
the broker has them, or raises after `timeout` (the checkpointer counts it and tries again
at the next checkpoint: the span path never waits for it).
"""
from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from connectors.triggers.checkpoint import ChangelogConfig, Records


class KafkaStore:
    def __init__(self, config: ChangelogConfig, client_id: str) -> None:
        self.config, self.client_id = config, client_id
        self.producer: AIOKafkaProducer | None = None

    def _options(self) -> dict[str, Any]:
        return {"bootstrap_servers": self.config.brokers, "client_id": self.client_id,
                "request_timeout_ms": int(self.config.timeout * 1000)}

    async def open(self) -> None:
        await self._create_topic()
        self.producer = AIOKafkaProducer(**self._options(), acks="all", enable_idempotence=True)
        await asyncio.wait_for(self.producer.start(), self.config.timeout)

    async def _create_topic(self) -> None:
        admin = AIOKafkaAdminClient(**self._options())
        await admin.start()
        try:
            topic = NewTopic(self.config.topic, self.config.partitions, self.config.replication_factor,
                             topic_configs={"cleanup.policy": "compact"})
            await admin.create_topics([topic])
        except TopicAlreadyExistsError:
            pass
        finally:
            await admin.close()

    async def load(self) -> Records:
        consumer = AIOKafkaConsumer(**self._options(), enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            return await asyncio.wait_for(self._read_all(consumer), self.config.timeout * 6)
        finally:
            await consumer.stop()

    async def _read_all(self, consumer: AIOKafkaConsumer) -> Records:
        assert self.producer is not None, "load before open"
        # The producer waits for the topic's metadata (the consumer's partitions_for_topic does not).
        partitions = [TopicPartition(self.config.topic, p)
                      for p in sorted(await self.producer.partitions_for(self.config.topic))]
        if not partitions:
            return {}
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: Records = {}
        left = {tp for tp in partitions if ends[tp] > 0}
        while left:
            batches = await consumer.getmany(*left, timeout_ms=1000)
            for tp, messages in batches.items():
                for message in messages:
                    key = message.key.decode() if message.key else ""
                    if message.value is None:
                        records.pop(key, None)
                    else:
                        records[key] = message.value
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
            left = {tp for tp in left if await consumer.position(tp) < ends[tp]}
        return records

    async def write(self, changed: dict[str, bytes | None]) -> None:
        assert self.producer is not None, "write before open"
        sends = [await self.producer.send(self.config.topic, value, key=key.encode())
                 for key, value in changed.items()]
        await asyncio.wait_for(asyncio.gather(*sends), self.config.timeout)

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

"""`kafka` receiver: a consumer group reading trigger events (`encoding: json`) or OTLP spans
(`otlp_proto`, `otlp_json`) from Kafka into a pipeline.

What it promises — at least once, never blocked by one bad message:
- the records of one poll are handed to the pipeline per partition as one batch, and that
  partition's offset is committed only after every stage of the pipeline took the batch
  (with exporters whose `sending_queue` is disabled, as config/safety.yaml has them, that
  means the actions ran); when the pipeline refuses, the same batch is offered again after
  the retry hint, and nothing past it is read from that partition meanwhile;
- a record that cannot be decoded is counted (`agentdbg_kafka_receiver_malformed_messages_total`),
  logged with topic, partition and offset, copied to `dead_letter_topic` when one is set,
  and skipped; the partition goes on;
- on a rebalance, offsets processed but not yet committed are committed for the revoked
  partitions; a commit that fails because the partition moved is logged (the next owner
  redelivers, and the pipeline's idempotency keys make that harmless).
"""
from __future__ import annotations

import asyncio
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import Counter
from pydantic import Field, field_validator

from pipeline import otlp_json
from pipeline.component import Factory, Kind, Receiver, Settings, Signal, StrictConfig
from pipeline.config.tls import TlsClientConfig
from pipeline.config.units import Duration
from pipeline.errors import PermanentError, Refused
from pipeline.events import Events
from pipeline.telemetry import metrics
from pipeline.traces import Traces

malformed_messages = Counter("agentdbg_kafka_receiver_malformed_messages",
                             "Kafka records that could not be decoded and were skipped (or dead-lettered).",
                             ["receiver", "topic"], registry=metrics.REGISTRY)
accepted_events = Counter("agentdbg_receiver_accepted_events", "Events successfully pushed into the pipeline.",
                          ["receiver", "transport"], registry=metrics.REGISTRY)


class KafkaReceiverConfig(StrictConfig):
    brokers: list[str] = Field(default_factory=lambda: ["localhost:9092"], min_length=1)
    topics: list[str] = Field(default_factory=lambda: ["otlp_spans"], min_length=1)
    group_id: str = "agentdbg"
    client_id: str = "agentdbg"
    initial_offset: Literal["latest", "earliest"] = "latest"
    encoding: Literal["otlp_proto", "otlp_json", "json"] = "otlp_proto"
    dead_letter_topic: str = ""
    session_timeout: Duration = 10.0
    heartbeat_interval: Duration = 3.0
    max_poll_records: int = Field(500, ge=1)
    tls: TlsClientConfig | None = None

    @field_validator("brokers", "topics", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def signal(self) -> Signal:
        return Signal.EVENTS if self.encoding == "json" else Signal.TRACES


class _Revoke(ConsumerRebalanceListener):
    def __init__(self, receiver: "KafkaReceiver") -> None:
        self.receiver = receiver

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.receiver.commit_done(set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        pass


class KafkaReceiver(Receiver):
    def __init__(self, settings: Settings, config: KafkaReceiverConfig) -> None:
        super().__init__(settings)
        self.config = config
        self.accepted = (accepted_events if config.signal == Signal.EVENTS else metrics.receiver_accepted_spans
                         ).labels(str(self.id), "kafka")
        self.refused = metrics.receiver_refused_spans.labels(str(self.id), "kafka")
        self.done: dict[TopicPartition, int] = {}   # next offset to commit, per partition
        self.consumer: AIOKafkaConsumer | None = None
        self.dead_letters: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def accepts(self, signal: Signal) -> bool:
        return signal == self.config.signal

    async def start(self, host: Any) -> None:
        security = {"security_protocol": "SSL", "ssl_context": self.config.tls.ssl_context()} \
            if self.config.tls and not self.config.tls.insecure else {}
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.config.brokers, group_id=self.config.group_id, client_id=self.config.client_id,
            enable_auto_commit=False, auto_offset_reset=self.config.initial_offset,
            session_timeout_ms=int(self.config.session_timeout * 1000),
            heartbeat_interval_ms=int(self.config.heartbeat_interval * 1000),
            max_poll_records=self.config.max_poll_records, **security)
        self.consumer.subscribe(self.config.topics, listener=_Revoke(self))
        if self.config.dead_letter_topic:
            self.dead_letters = AIOKafkaProducer(bootstrap_servers=self.config.brokers, acks="all", **security)
        self._task = asyncio.create_task(self._run(), name=f"{self.id}-poll")

    async def shutdown(self, deadline: float | None = None) -> None:
        self._stopping.set()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.consumer:
            await self.commit_done(None)
            await self.consumer.stop()
        if self.dead_letters:
            await self.dead_letters.stop()

    async def _run(self) -> None:
        """Connect (retrying while Kafka is away), then poll, deliver and commit until stopped."""
        assert self.consumer is not None
        while True:
            try:
                await self.consumer.start()
                if self.dead_letters:
                    await self.dead_letters.start()
                break
            except KafkaError as exc:
                self.log.warning("cannot reach Kafka; retrying", extra={"kv": {"error": str(exc)}})
                await asyncio.sleep(2.0)
        self.log.info("consuming", extra={"kv": {"topics": ",".join(self.config.topics),
                                                 "group": self.config.group_id}})
        while True:
            polled = await self.consumer.getmany(timeout_ms=200)
            for partition, records in polled.items():
                await self._partition(partition, records)

    async def _partition(self, partition: TopicPartition, records: list[Any]) -> None:
        items = []
        for record in records:
            item = await self._decode(record)
            if item is not None:
                items.append(item)
        if items:
            await self._deliver(self._batch(items))
        self.done[partition] = records[-1].offset + 1
        await self.commit_done({partition})

    async def _decode(self, record: Any) -> Any:
        try:
            if self.config.encoding == "json":
                document = orjson.loads(record.value)
                if not isinstance(document, dict) or not str(document.get("schema", "")).startswith("agentdbg."):
                    raise ValueError("not an agentdbg event document (no agentdbg.* schema field)")
                return document
            if self.config.encoding == "otlp_json":
                return otlp_json.decode(record.value, ExportTraceServiceRequest).SerializeToString()
            ExportTraceServiceRequest.FromString(record.value)
            return record.value
        except (ValueError, DecodeError, orjson.JSONDecodeError, otlp_json.JsonDecodeError) as exc:
            await self._malformed(record, str(exc))
            return None

    def _batch(self, items: list[Any]) -> Any:
        if self.config.encoding == "json":
            return Events(items)
        return Traces(None, b"".join(items))  # OTLP's repeated top level: concatenation merges

    async def _deliver(self, batch: Any) -> None:
        consumer = self.consumers.get(self.config.signal)
        while consumer is not None:
            try:
                await consumer.consume(batch)
                self.accepted.inc(batch.span_count)
                return
            except Refused as exc:
                self.refused.inc(batch.span_count)
                await asyncio.sleep(min(exc.retry_after, 5.0))
                consumer = self.consumers.get(self.config.signal)  # may have changed on reload
            except PermanentError as exc:
                self.log.error("the pipeline refused a batch permanently; skipping it",
                               extra={"kv": {"error": str(exc), "items": batch.span_count}})
                return

    async def _malformed(self, record: Any, error: str) -> None:
        malformed_messages.labels(str(self.id), record.topic).inc()
        self.log.error("skipping a malformed message", extra={"kv": {
            "topic": record.topic, "partition": record.partition, "offset": record.offset, "error": error}})
        if self.dead_letters is None:
            return
        headers = [("agentdbg.error", error.encode()[:1000]), ("agentdbg.source", f"{record.topic}/"
                   f"{record.partition}/{record.offset}".encode())]
        try:
            await self.dead_letters.send_and_wait(self.config.dead_letter_topic, record.value, key=record.key,
                                                  headers=headers)
        except KafkaError as exc:
            self.log.error("could not dead-letter the message", extra={"kv": {"error": str(exc)}})

    async def commit_done(self, partitions: set[TopicPartition] | None) -> None:
        offsets = {tp: offset for tp, offset in self.done.items() if partitions is None or tp in partitions}
        if not offsets or self.consumer is None:
            return
        try:
            await self.consumer.commit(offsets)
            for tp in offsets:
                self.done.pop(tp, None)
        except (CommitFailedError, KafkaError) as exc:
            self.log.warning("offset commit failed; those records will be redelivered",
                             extra={"kv": {"error": str(exc)}})


factory = Factory("kafka", Kind.RECEIVER, KafkaReceiverConfig, KafkaReceiver,
                  signals=frozenset({Signal.TRACES, Signal.EVENTS}),
                  description="Kafka consumer group: trigger events (json) or OTLP spans, commit after delivery")

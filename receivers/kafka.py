"""`kafka` receiver: a consumer group reading trigger events (`encoding: json`) or OTLP spans
(`otlp_proto`, `otlp_json`) from Kafka into a pipeline.

What it promises — at least once, never blocked by one bad message:
- the records of one poll are handed to the pipeline per partition as one batch, and that
  partition's offset is committed only after every stage of the pipeline took the batch
  (with exporters whose `sending_queue` is disabled, as config/safety.yaml has them, that
  means the actions ran); when the pipeline refuses, the same batch is offered again after
  the retry hint, and nothing past it is read from that partition meanwhile;
- a record that cannot be decoded, or (`encoding: json`) is not a valid document of a schema
  this version reads (`pipeline.documents`: `agentdbg.trigger/v1`, `agentdbg.decision/v1`,
  strictly typed), is counted (`agentdbg_kafka_receiver_malformed_messages_total{reason}`,
  `undecodable` or `invalid_document`), logged with topic, partition and offset, copied to
  `dead_letter_topic` when one is set, and committed; the partition goes on;
- a batch that a stage fails on with an error (anything but a retryable refusal) is offered
  again, up to `max_attempts` times; then its records are offered one at a time, and each
  record that still fails `max_attempts` times (or is refused permanently) is counted
  (`agentdbg_kafka_receiver_failed_messages_total{reason}`), logged with topic, partition and
  offset, dead-lettered and committed: one message never stalls its partition, and the
  poll loop outlives any failure (a failed poll is logged and retried from the last
  committed offset);
- on a rebalance, offsets processed but not yet committed are committed for the revoked
  partitions; a commit that fails because the partition moved is logged (the next owner
  redelivers, and the pipeline's idempotency keys make that harmless);
- with `key_family` (the collector's `partition_by` for the topic: config/evaluator.yaml), the
  stateful connectors its pipelines end in (triggers) follow the partitions: on revoke, after
  the commit, each checkpoints and forgets the subjects of the revoked partitions; on
  assignment, before the first record is read, each restores those of the assigned ones
  (pipeline.contracts.PartitionedState; pipeline/partitioning.py places a subject). Every
  assignment is logged with its partitions.
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

from pipeline import documents, otlp_json
from pipeline.component import Factory, Kind, Receiver, Settings, Signal, StrictConfig
from pipeline.config.tls import TlsClientConfig
from pipeline.config.units import Duration
from pipeline.contracts import PartitionedState, SubjectFilter
from pipeline.errors import PermanentError, Refused
from pipeline.host import Host
from pipeline.partitioning import PartitionBy, partition_of, subject_key_of
from pipeline.pdata.events import Events
from pipeline.pdata.traces import Traces
from pipeline.telemetry import metrics
from pipeline.telemetry.logs import Throttled

malformed_messages = Counter("agentdbg_kafka_receiver_malformed_messages",
                             "Kafka records set aside (dead-lettered when a topic is set) before delivery, by "
                             "reason: undecodable, or invalid_document (not a valid document of its schema).",
                             ["receiver", "topic", "reason"], registry=metrics.REGISTRY)
failed_messages = Counter("agentdbg_kafka_receiver_failed_messages",
                          "Kafka records the pipeline failed on max_attempts times (reason error) or refused "
                          "permanently (reason permanent), then dead-lettered and committed.",
                          ["receiver", "topic", "reason"], registry=metrics.REGISTRY)
dead_letter_failures = Counter("agentdbg_kafka_receiver_dead_letter_failures",
                               "Records that could not be written to the dead-letter topic (logged, then "
                               "committed).", ["receiver", "topic"], registry=metrics.REGISTRY)
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
    # Times a batch (then each of its records) is offered to a pipeline that fails on it with
    # an error before the record is dead-lettered. Retryable refusals (backpressure) do not count.
    max_attempts: int = Field(3, ge=1)
    # How the topics' records are keyed (the collectors' kafka exporter `partition_by`): then the
    # state of the triggers connector fed from here moves with the partitions on a rebalance.
    key_family: PartitionBy | None = None
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


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, receiver: "KafkaReceiver") -> None:
        self.receiver = receiver

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.receiver.commit_done(set(revoked))
        await self.receiver.state_follows(revoked, assigned=False)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.receiver.log.info("partitions assigned", extra={"kv": {
            "group": self.receiver.config.group_id, "partitions": _describe(assigned)}})
        await self.receiver.state_follows(assigned, assigned=True)


def _describe(partitions: list[TopicPartition]) -> str:
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return " ".join(f"{topic}:{','.join(map(str, sorted(ps)))}" for topic, ps in sorted(by_topic.items())) or "-"


class KafkaReceiver(Receiver):
    def __init__(self, settings: Settings, config: KafkaReceiverConfig) -> None:
        super().__init__(settings)
        self.config = config
        self.accepted = (accepted_events if config.signal == Signal.EVENTS else metrics.receiver_accepted_spans
                         ).labels(str(self.id), "kafka")
        self.refused = metrics.receiver_refused_spans.labels(str(self.id), "kafka")
        self.done: dict[TopicPartition, int] = {}   # next offset to commit, per partition
        self.throttled = Throttled(self.log)  # a broker outage repeats these every second
        self.consumer: AIOKafkaConsumer | None = None
        self.dead_letters: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.state_owners: list[PartitionedState] = []

    def set_partitioned_state(self, owners: list[PartitionedState]) -> None:
        """`pipeline.contracts.PartitionedSource`: only with `key_family` does state follow."""
        self.state_owners = owners if self.config.key_family else []
        for owner in self.state_owners:
            owner.partitioned()

    async def state_follows(self, partitions: list[TopicPartition], assigned: bool) -> None:
        """Restore (assigned) or checkpoint and forget (revoked) the state of the subjects the
        `partitions` hold, in every stateful connector fed from here. A connector's failure is
        logged; the partitions are read on regardless (its state there starts empty)."""
        if not self.state_owners or not partitions or self.consumer is None:
            return
        owns = self._owner_filter(partitions)
        for owner in self.state_owners:
            try:
                await (owner.partitions_assigned(owns) if assigned else owner.partitions_revoked(owns))
            except Exception:  # noqa: BLE001 - consuming must go on; the log names the partitions
                self.log.exception("state did not follow the partitions", extra={"kv": {
                    "assigned" if assigned else "revoked": _describe(partitions)}})

    def _owner_filter(self, partitions: list[TopicPartition]) -> SubjectFilter:
        assert self.consumer is not None and self.config.key_family is not None
        family, held = self.config.key_family, {(tp.topic, tp.partition) for tp in partitions}
        counts = {topic: len(self.consumer.partitions_for_topic(topic) or ()) for topic, _ in held}

        def owns(subject: Any) -> bool:
            key = subject_key_of(family, subject)
            return key is not None and any(
                (topic, partition_of(key, count)) in held for topic, count in counts.items() if count)
        return owns

    def accepts(self, signal: Signal) -> bool:
        return signal == self.config.signal

    async def start(self, host: Host) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.id}-poll")
        self._task.add_done_callback(self._ended)

    def _make_clients(self) -> None:
        """Fresh clients: aiokafka's cannot be started again after a start that failed half-way."""
        security = {"security_protocol": "SSL", "ssl_context": self.config.tls.ssl_context()} \
            if self.config.tls and not self.config.tls.insecure else {}
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.config.brokers, group_id=self.config.group_id, client_id=self.config.client_id,
            enable_auto_commit=False, auto_offset_reset=self.config.initial_offset,
            session_timeout_ms=int(self.config.session_timeout * 1000),
            heartbeat_interval_ms=int(self.config.heartbeat_interval * 1000),
            max_poll_records=self.config.max_poll_records, **security)
        self.consumer.subscribe(self.config.topics, listener=_Rebalance(self))
        if self.config.dead_letter_topic:
            self.dead_letters = AIOKafkaProducer(bootstrap_servers=self.config.brokers, acks="all", **security)

    async def _discard_clients(self) -> None:
        for client in (self.consumer, self.dead_letters):
            if client is not None:
                try:
                    await client.stop()
                except Exception:  # noqa: BLE001 - a client that never started may fail to stop
                    pass
        self.consumer = self.dead_letters = None

    def _ended(self, task: asyncio.Task[None]) -> None:
        """Nothing should end the poll loop but shutdown; if something does, say so loudly."""
        if not task.cancelled() and task.exception() is not None:
            self.log.error("the kafka receiver stopped consuming", exc_info=task.exception())

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
        while True:
            self._make_clients()
            assert self.consumer is not None
            try:
                await self.consumer.start()
                if self.dead_letters:
                    await self.dead_letters.start()
                break
            except KafkaError as exc:
                self.log.warning("cannot start consuming from Kafka; retrying with new clients", extra={"kv": {
                    "error": f"{type(exc).__name__}: {exc}", "brokers": ",".join(self.config.brokers)}})
                await self._discard_clients()
                await asyncio.sleep(2.0)
        self.log.info("consuming", extra={"kv": {"topics": ",".join(self.config.topics),
                                                 "group": self.config.group_id}})
        while True:
            try:
                polled = await self.consumer.getmany(timeout_ms=200)
            except KafkaError as exc:
                self.throttled.warning("poll failed; retrying", {"error": str(exc)})
                await asyncio.sleep(1.0)
                continue
            for partition, records in polled.items():
                await self._guarded(partition, records)

    async def _guarded(self, partition: TopicPartition, records: list[Any]) -> None:
        """`_partition`, and on an unexpected failure the same records again at the next poll."""
        assert self.consumer is not None
        try:
            await self._partition(partition, records)
        except Exception:  # noqa: BLE001 - the poll loop must outlive any one failure
            self.log.exception("handling polled records failed; reading them again", extra={"kv": {
                "topic": partition.topic, "partition": partition.partition, "offset": records[0].offset}})
            try:
                self.consumer.seek(partition, records[0].offset)
            except Exception as exc:  # noqa: BLE001 - revoked meanwhile: its next owner reads them
                self.log.warning("could not rewind the partition", extra={"kv": {"error": repr(exc)}})
            await asyncio.sleep(1.0)

    async def _partition(self, partition: TopicPartition, records: list[Any]) -> None:
        decoded = []
        for record in records:
            item = await self._decode(record)
            if item is not None:
                decoded.append((record, item))
        if decoded:
            await self._deliver_isolating(decoded)
        self.done[partition] = records[-1].offset + 1
        await self.commit_done({partition})

    async def _decode(self, record: Any) -> bytes | dict[str, Any] | None:
        try:
            if self.config.encoding == "json":
                document = orjson.loads(record.value)
            elif self.config.encoding == "otlp_json":
                return otlp_json.decode(record.value, ExportTraceServiceRequest).SerializeToString()
            else:
                ExportTraceServiceRequest.FromString(record.value)
                return record.value
        except (ValueError, DecodeError, orjson.JSONDecodeError, otlp_json.JsonDecodeError) as exc:
            await self._set_aside(record, malformed_messages, "undecodable", str(exc))
            return None
        try:
            documents.validate(document)
        except documents.InvalidDocument as exc:
            await self._set_aside(record, malformed_messages, "invalid_document", str(exc))
            return None
        return document

    def _batch(self, items: list[Any]) -> Traces | Events:
        if self.config.encoding == "json":
            return Events(items)
        return Traces(None, b"".join(items))  # OTLP's repeated top level: concatenation merges

    async def _deliver_isolating(self, decoded: list[tuple[Any, Any]]) -> None:
        """Deliver the records as one batch; if that fails, one at a time, setting aside each
        record that fails on its own."""
        failure = await self._deliver([item for _, item in decoded])
        if failure is None:
            return
        if len(decoded) > 1:
            self.log.warning("a batch kept failing; delivering its records one at a time", extra={"kv": {
                "topic": decoded[0][0].topic, "partition": decoded[0][0].partition,
                "offsets": f"{decoded[0][0].offset}-{decoded[-1][0].offset}", "error": failure[1]}})
            for record, item in decoded:
                failure = await self._deliver([item])
                if failure is not None:
                    await self._set_aside(record, failed_messages, *failure)
        else:
            await self._set_aside(decoded[0][0], failed_messages, *failure)

    async def _deliver(self, items: list[Any]) -> tuple[str, str] | None:
        """None once the pipeline took the items, else (reason, error) after a permanent refusal
        or `max_attempts` failures. A retryable refusal is waited out, however long."""
        attempt = 0
        while True:
            consumer = self.consumers.get(self.config.signal)  # may have changed on reload
            if consumer is None:
                return None
            batch = self._batch(items)  # afresh for each attempt: a failed stage may have changed it
            try:
                await consumer.consume(batch)
                self.accepted.inc(batch.item_count)
                return None
            except Refused as exc:
                self.refused.inc(batch.item_count)
                await asyncio.sleep(min(exc.retry_after, 5.0))
            except PermanentError as exc:
                return "permanent", str(exc)
            except Exception as exc:  # noqa: BLE001 - a bug or a poison record in any stage
                attempt += 1
                self.log.warning("the pipeline failed on a batch", exc_info=attempt == 1, extra={"kv": {
                    "attempt": attempt, "max_attempts": self.config.max_attempts, "items": len(items),
                    "error": repr(exc)}})
                if attempt >= self.config.max_attempts:
                    return "error", repr(exc)
                await asyncio.sleep(min(0.1 * 2 ** attempt, 2.0))

    async def _set_aside(self, record: Any, counter: Counter, reason: str, error: str) -> None:
        """Count, log and dead-letter one record; the caller then commits past it."""
        counter.labels(str(self.id), record.topic, reason).inc()
        self.log.error("skipping a malformed message" if counter is malformed_messages
                       else "skipping a message the pipeline failed on", extra={"kv": {
                           "topic": record.topic, "partition": record.partition, "offset": record.offset,
                           "reason": reason, "error": error[:1000]}})
        if self.dead_letters is None:
            return
        headers = [("agentdbg.error", error.encode()[:1000]), ("agentdbg.reason", reason.encode()),
                   ("agentdbg.source", f"{record.topic}/{record.partition}/{record.offset}".encode())]
        for attempt in range(1, self.config.max_attempts + 1):
            try:
                await self.dead_letters.send_and_wait(self.config.dead_letter_topic, record.value, key=record.key,
                                                      headers=headers)
                return
            except KafkaError as exc:
                self.log.warning("could not dead-letter the message", extra={"kv": {
                    "attempt": attempt, "error": str(exc), "offset": record.offset}})
                await asyncio.sleep(min(0.2 * 2 ** attempt, 2.0))
        dead_letter_failures.labels(str(self.id), record.topic).inc()
        self.log.error("gave up dead-lettering the message; it is skipped", extra={"kv": {
            "topic": record.topic, "partition": record.partition, "offset": record.offset}})

    async def commit_done(self, partitions: set[TopicPartition] | None) -> None:
        offsets = {tp: offset for tp, offset in self.done.items() if partitions is None or tp in partitions}
        if not offsets or self.consumer is None:
            return
        try:
            await self.consumer.commit(offsets)
            for tp in offsets:
                self.done.pop(tp, None)
        except (CommitFailedError, KafkaError) as exc:
            self.throttled.warning("offset commit failed; those records will be redelivered", {"error": str(exc)})


factory = Factory("kafka", Kind.RECEIVER, KafkaReceiverConfig, KafkaReceiver,
                  signals=frozenset({Signal.TRACES, Signal.EVENTS}),
                  description="Kafka consumer group: trigger events (json) or OTLP spans, commit after delivery")

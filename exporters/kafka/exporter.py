"""The `kafka` exporter's producer side: aiokafka, started lazily, with errors sorted into
retryable (the helper retries them) and permanent (counted with their reason)."""
from __future__ import annotations

import asyncio
from typing import Any

import aiokafka.errors as kafka_errors
from aiokafka import AIOKafkaProducer
from aiokafka.conn import create_conn

from exporters.helper import QueuedExporter
from exporters.helper.queued import describe
from exporters.kafka.config import KafkaConfig
from exporters.kafka.records import Encoded, RecordEncoder
from pipeline.component import Settings, Signal
from pipeline.errors import PartialFailure, PermanentError, RetryableError
from pipeline.pdata.events import Events
from pipeline.pdata.logs import Logs
from pipeline.pdata.traces import Traces

# Retrying these cannot help until someone changes the config, the ACLs or the broker.
_AUTH_ERRORS = (
    kafka_errors.AuthenticationFailedError, kafka_errors.AuthenticationMethodNotSupported,
    kafka_errors.SaslAuthenticationFailed, kafka_errors.IllegalSaslStateError,
    kafka_errors.UnsupportedSaslMechanismError, kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.TopicAuthorizationFailedError, kafka_errors.TransactionalIdAuthorizationFailed,
)
_TOO_LARGE_ERRORS = (
    kafka_errors.MessageSizeTooLargeError, kafka_errors.RecordListTooLargeError,
    kafka_errors.RecordTooLargeError,
)
_CONFIG_ERRORS = (
    kafka_errors.InvalidTopicError, kafka_errors.UnsupportedCodecError, kafka_errors.InvalidRequiredAcksError,
    kafka_errors.PolicyViolationError, kafka_errors.UnsupportedForMessageFormatError,
)
# The brokers refuse this idempotent producer's sequence state (after a broker restart or a
# send cut short by a timeout); aiokafka does not reset it, so every later send fails alike.
_PRODUCER_STATE_ERRORS = (
    kafka_errors.OutOfOrderSequenceNumber, kafka_errors.InvalidProducerEpoch,
    kafka_errors.InvalidProducerIdMapping, kafka_errors.DuplicateSequenceNumber,
)
# Enough for a first try at start-up; after that sends retry with the helper's backoff.
_START_PROBE_SECONDS = 5.0
_STOP_GRACE_SECONDS = 5.0


class KafkaExporter(QueuedExporter[Traces | Logs | Events]):
    def __init__(self, settings: Settings, config: KafkaConfig) -> None:
        super().__init__(settings, config)
        self.kafka = config
        # An instance serves one pipeline type (the graph builds one per id and signal): a logs
        # pipeline's records go to `logs.topic`, in `logs.encoding` when set.
        logs = settings.signal == Signal.LOGS
        self.topic = config.logs.topic if logs else config.topic
        encoding = (config.logs.encoding or config.encoding) if logs else config.encoding
        self.encoder = RecordEncoder(encoding, config.key_family, config.producer.max_message_bytes)
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    # -- lifecycle ------------------------------------------------------------------------------
    async def start_client(self) -> None:
        """Connect once, to report a bad address or credentials early; never stops the daemon."""
        where = ",".join(self.kafka.brokers)
        try:
            await asyncio.wait_for(self._client(), _START_PROBE_SECONDS)
        except PermanentError as exc:
            self.log.error("kafka refuses this exporter; its batches will fail until the config or the "
                           "brokers change", extra={"kv": {"brokers": where, "error": str(exc)}})
        except Exception as exc:  # noqa: BLE001 - an outage at start only delays the first send
            self.log.warning("kafka not reachable at start; sends will retry",
                             extra={"kv": {"brokers": where, "error": describe(exc)}})

    async def stop_client(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        # stop() flushes the producer's buffer; with the brokers gone that waits for its
        # records to expire. Bounded so that shutdown ends: what was not acknowledged by now
        # belongs to batches the helper has already counted as failed.
        try:
            await asyncio.wait_for(producer.stop(), (self.kafka.timeout or 30.0) + _STOP_GRACE_SECONDS)
        except asyncio.TimeoutError:
            self.log.warning("kafka producer did not flush before shutdown", extra={"kv": {
                "brokers": ",".join(self.kafka.brokers)}})

    # -- sending --------------------------------------------------------------------------------
    async def send(self, batch: Traces | Logs | Events) -> PartialFailure | None:
        """Produce a traces, logs or events batch as records that fit the broker's message size."""
        encoded = self.encoder.encode(batch)
        if encoded.records:
            producer = await self._client()
            await self._require_topic(producer)
            try:
                await self._produce(producer, encoded)
            except kafka_errors.UnknownTopicOrPartitionError as exc:
                raise (await self._unknown_topic(producer) or RetryableError(
                    f"topic {self.topic!r} has no leader yet", error_type="unavailable")) from exc
            except _PRODUCER_STATE_ERRORS as exc:
                await self._discard(producer)
                raise RetryableError(f"the brokers refused this producer's sequence numbers ({describe(exc)}); "
                                     f"retrying with a new idempotent producer", error_type="unavailable") from exc
            except kafka_errors.KafkaError as exc:
                raise classify(exc) from exc
        return self._refused(encoded)

    async def _produce(self, producer: AIOKafkaProducer, encoded: Encoded) -> None:
        # Queue every record first, then wait for all: aiokafka batches them per partition.
        futures = [await producer.send(self.topic, record.value, key=record.key)
                   for record in encoded.records]
        results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _refused(self, encoded: Encoded) -> PartialFailure | None:
        if not encoded.oversize:
            return None
        limit = self.kafka.producer.max_message_bytes
        reasons = "; ".join(f"{item.what} is {item.size} bytes encoded" for item in encoded.oversize[:5])
        return PartialFailure(encoded.rejected, "message_too_large",
                              f"too large for one Kafka message even alone (producer.max_message_bytes "
                              f"{limit}): {reasons}")

    async def _require_topic(self, producer: AIOKafkaProducer) -> None:
        """Before a topic's first send: with auto-creation off, aiokafka would poll for a missing
        topic's metadata until the send times out, so the retry said only `TimeoutError` (and
        aiokafka logged an error every 100 ms). Ask the brokers once instead."""
        if producer.client.cluster.partitions_for_topic(self.topic) is None:
            missing = await self._unknown_topic(producer)
            if missing is not None:
                raise missing

    async def _unknown_topic(self, producer: AIOKafkaProducer) -> RetryableError | None:
        """Whether the brokers lack the topic (or cannot be asked). Retryable, as Kafka itself
        classes it and otelcol retries it: an operator who reads the log creates the topic and
        every batch waiting in the queue is delivered."""
        try:
            metadata = await producer.client.fetch_all_metadata()
        except kafka_errors.KafkaError as fetch_error:
            return RetryableError(f"no broker answered for topic {self.topic!r}: {fetch_error}",
                                  error_type="unavailable")
        if self.topic in metadata.topics():
            return None
        return RetryableError(f"topic {self.topic!r} does not exist and the brokers do not create it: "
                              f"create it (or enable auto.create.topics.enable); retrying", error_type="unknown_topic")

    async def _discard(self, producer: AIOKafkaProducer) -> None:
        """Drop a producer the brokers no longer accept; the next attempt starts a new one (a new
        producer id). What it had in flight fails and is retried by the helper: at least once."""
        if self._producer is None or self._producer is not producer:
            return  # another sender already replaced it
        self._producer = None
        try:
            await asyncio.wait_for(producer.stop(), _STOP_GRACE_SECONDS)
        except Exception:  # noqa: BLE001 - it is being thrown away; its batches are retried
            pass

    # -- the producer ---------------------------------------------------------------------------
    async def _client(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._starting:  # one start at a time across the sender workers
            if self._producer is None:
                self._producer = await self._start_producer()
        return self._producer

    async def _start_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(**self.producer_options())
        try:
            await producer.start()
        except asyncio.CancelledError:
            await producer.stop()
            raise
        except Exception as exc:
            await producer.stop()
            raise await self._start_error(exc) from exc
        return producer

    async def _start_error(self, exc: Exception) -> Exception:
        if isinstance(exc, kafka_errors.KafkaConnectionError):
            return await self._diagnose_bootstrap(exc)
        if self._scram_refused(exc):
            user = self.kafka.sasl.username if self.kafka.sasl else ""
            return PermanentError(f"SCRAM authentication failed: the brokers refused the credentials of "
                                  f"{user!r} ({describe(exc)})", error_type="auth")
        if not isinstance(exc, kafka_errors.KafkaError):
            return exc
        # After bootstrap, start fails only while getting a producer id (idempotence).
        error = classify(exc)
        if isinstance(error, RetryableError) and self.kafka.producer.enable_idempotence and not exc.retriable:
            return PermanentError(f"the brokers refused to start an idempotent producer ({describe(exc)}): use "
                                  f"brokers that support it or set producer.enable_idempotence: false",
                                  error_type="idempotence_refused")
        return error

    async def _diagnose_bootstrap(self, exc: Exception) -> Exception:
        """aiokafka folds every bootstrap failure into one connection error: find an auth failure."""
        options = self.producer_options()
        for broker in self.kafka.brokers:
            host, _, port = broker.rpartition(":")
            try:
                conn = await create_conn(host, int(port), client_id=options["client_id"],
                                         request_timeout_ms=options["request_timeout_ms"],
                                         **_connection_options(options))
            except _AUTH_ERRORS as auth_error:
                user = self.kafka.sasl.username if self.kafka.sasl else ""
                return PermanentError(f"authentication to {broker} as {user!r} failed: {describe(auth_error)}",
                                      error_type="auth")
            except Exception as other:  # noqa: BLE001 - this is a diagnosis, the first error stands
                if self._scram_refused(other):
                    return await self._start_error(other)
                continue
            conn.close()
        return RetryableError(f"no broker reachable ({', '.join(self.kafka.brokers)}): {exc}",
                              error_type="unavailable")

    def _scram_refused(self, exc: Exception) -> bool:
        """aiokafka's SCRAM client fails with KeyError / ValueError when the server's final
        message is an error (`e=...`, no verifier `v`) or its signature is wrong."""
        sasl = self.kafka.sasl
        return sasl is not None and sasl.mechanism.startswith("SCRAM") and isinstance(exc, (KeyError, ValueError))

    def producer_options(self) -> dict[str, Any]:
        producer = self.kafka.producer
        options: dict[str, Any] = {
            "bootstrap_servers": self.kafka.brokers,
            "client_id": self.kafka.client_id,
            "acks": producer.required_acks,
            "enable_idempotence": producer.enable_idempotence,
            "compression_type": None if producer.compression == "none" else producer.compression,
            "linger_ms": int(producer.linger * 1000),
            "max_request_size": producer.max_message_bytes,
            # Records still buffered when a send times out expire by then, instead of piling up.
            "request_timeout_ms": int((self.kafka.timeout or 30.0) * 1000),
            "security_protocol": self._security_protocol(),
        }
        if self.kafka.uses_tls:
            assert self.kafka.tls is not None
            options["ssl_context"] = self.kafka.tls.ssl_context()
        if self.kafka.sasl is not None:
            options["sasl_mechanism"] = self.kafka.sasl.mechanism
            options["sasl_plain_username"] = self.kafka.sasl.username
            options["sasl_plain_password"] = self.kafka.sasl.password.get_secret_value()
        return options

    def _security_protocol(self) -> str:
        if self.kafka.sasl is not None:
            return "SASL_SSL" if self.kafka.uses_tls else "SASL_PLAINTEXT"
        return "SSL" if self.kafka.uses_tls else "PLAINTEXT"


def _connection_options(options: dict[str, Any]) -> dict[str, Any]:
    keys = ("ssl_context", "security_protocol", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password")
    return {key: options[key] for key in keys if key in options}


def classify(exc: kafka_errors.KafkaError) -> RetryableError | PermanentError:
    """otelcol's rule: everything is retryable except what retrying cannot fix."""
    if isinstance(exc, _AUTH_ERRORS):
        return PermanentError(f"not authorised: {describe(exc)}", error_type="auth")
    if isinstance(exc, _TOO_LARGE_ERRORS):
        return PermanentError(f"the broker refused the message as too large (lower producer.max_message_bytes "
                              f"to the broker's message.max.bytes): {describe(exc)}", error_type="message_too_large")
    if isinstance(exc, _CONFIG_ERRORS):
        return PermanentError(f"the broker refused the request: {describe(exc)}", error_type="invalid_request")
    return RetryableError(describe(exc), error_type="unavailable")

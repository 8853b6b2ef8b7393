"""A real Apache Kafka broker for tests: one KRaft node (broker and controller in one JVM).

The jars come from Maven Central through tests/kafka/pom.xml (`make kafka` copies them into
.cache/kafka/libs) and run with the machine's Java 17. `KafkaBroker().start()` formats a fresh
KRaft log directory (the SCRAM user is written then, so it exists from the first start), writes
a server.properties that listens on free 127.0.0.1 ports only, starts `kafka.Kafka` and waits
until the broker answers a metadata request as a live broker. Topic auto-creation is off, as
in a careful production cluster: whoever writes or reads a topic creates it first
(`create_topic`), so a producer sending to a missing topic sees the real unknown-topic error.
One broker serves a whole test run (tests/conftest.py); `reset()` deletes what a test made.

`pause()` / `resume()` freeze and thaw the JVM (SIGSTOP / SIGCONT): open connections, no answers,
what a hung broker looks like. `restart()` is a real bounce: SIGTERM (SIGKILL with `hard=True`
or when it does not stop in time), then `kafka.Kafka` again on the same ports and log
directory, so every acknowledged record is still there afterwards. `stop()` ends it.

`read_topic` reads a topic of OTLP messages back from the start until every wanted span is
seen; `produce` writes records to a topic (what an upstream producer would); `TopicTail`
keeps reading topics in the background, as a user's consumer would, for tests that watch
a topic while they act.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Coroutine, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.protocol.admin import DeleteGroupsRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline import otlp_json
from pipeline.pdata.traces import iter_spans
from testkit.harness import free_port
from testkit.process import Pausable

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
KAFKA_LIBS = REPO / ".cache" / "kafka" / "libs"
INTERNAL_TOPICS = ("__consumer_offsets", "__transaction_state", "__share_group_state")
# The SCRAM user every broker knows (written at format time, before the broker first starts).
SCRAM_USER, SCRAM_PASSWORD = "agent", "agent-secret"
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
# A small heap and the client compiler only: the broker starts in a few seconds on a loaded
# 2-core machine and test traffic is light. Benchmarks pass `fast_start=False` (full JIT).
JVM_FLAGS = ["-Xmx512m", "-Xms128m", "-XX:+UseSerialGC", "-Xss1m", "-Djava.awt.headless=true"]
FAST_START_FLAGS = ["-XX:TieredStopAtLevel=1", "-Xshare:auto"]
LOG4J2 = """\
Configuration:
  Appenders:
    Console: {name: out, target: SYSTEM_OUT, PatternLayout: {pattern: "[%d] %p %m (%c)%n"}}
  Loggers:
    Root: {level: WARN, AppenderRef: [{ref: out}]}
    Logger:
      - {name: kafka.server.KafkaRaftServer, level: INFO}
      - {name: kafka.log.LogCleaner, level: INFO}
"""


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on a private event loop in a worker thread: works from plain tests and from inside
    an async test's running loop alike."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def java_binary() -> str:
    java = shutil.which("java")
    if java is None:
        raise FileNotFoundError("no `java` on PATH: install a Java 17 runtime (Debian: openjdk-17-jre-headless)")
    return java


def kafka_classpath() -> str:
    jars = sorted(KAFKA_LIBS.glob("*.jar"))
    if not any(jar.name.startswith("kafka_2.13-") for jar in jars):
        raise FileNotFoundError(f"no Kafka jars in {KAFKA_LIBS}: run `make kafka` (or `make test`)")
    return os.pathsep.join(str(jar) for jar in jars)


def cluster_id() -> str:
    """A KRaft cluster id: a random UUID, URL-safe base64 without padding; not starting with
    `-`, which the storage tool's argument parser would take for an option."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def kafka_available() -> bool:
    try:
        java_binary(), kafka_classpath()
    except FileNotFoundError:
        return False
    return True


class KafkaBroker(Pausable):
    def __init__(self, authentication: bool = False, fast_start: bool = True) -> None:
        # Clients of `bootstrap` must authenticate (SASL SCRAM, user SCRAM_USER); those of
        # `sasl_bootstrap` always must.
        self.authentication = authentication
        self.fast_start = fast_start
        self.port, self.sasl_port = free_port(), free_port()
        self._internal_port, self._controller_port = free_port(), free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        # Always there, so the broker every test shares can also show refused credentials.
        self.sasl_bootstrap = f"127.0.0.1:{self.sasl_port}"
        self.dir = Path(tempfile.mkdtemp(prefix="kafka-"))
        self.log_path = self.dir / "kafka.log"
        self.proc: subprocess.Popen | None = None
        self._log: Any = None
        self._formatted = False

    # -- configuration ------------------------------------------------------------------------
    def properties(self) -> dict[str, str]:
        client = "SASL_PLAINTEXT" if self.authentication else "PLAINTEXT"
        props = {
            "process.roles": "broker,controller", "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self._controller_port}",
            "listeners": f"CLIENT://127.0.0.1:{self.port},SASL://127.0.0.1:{self.sasl_port},"
                         f"INTERNAL://127.0.0.1:{self._internal_port},CONTROLLER://127.0.0.1:{self._controller_port}",
            "advertised.listeners": f"CLIENT://127.0.0.1:{self.port},SASL://127.0.0.1:{self.sasl_port},"
                                    f"INTERNAL://127.0.0.1:{self._internal_port}",
            "listener.security.protocol.map": f"CLIENT:{client},SASL:SASL_PLAINTEXT,INTERNAL:PLAINTEXT,"
                                              "CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms": ",".join(SCRAM_MECHANISMS),
            "inter.broker.listener.name": "INTERNAL", "controller.listener.names": "CONTROLLER",
            "log.dirs": str(self.dir / "data"),
            "auto.create.topics.enable": "false",
            "num.partitions": "1", "default.replication.factor": "1", "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1", "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1", "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "2",
            "share.coordinator.state.topic.replication.factor": "1", "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Tests restart consumers with short sessions (2 s) to rejoin fast; Kafka's floor is 6 s.
            "group.min.session.timeout.ms": "1000",
            # Small segments and short retention: test data is small and throwaway; the cleaner
            # looks often, so a compacted topic is compacted within seconds of a segment roll.
            "log.segment.bytes": str(8 * 1024 * 1024), "log.retention.ms": str(3_600_000),
            "log.retention.check.interval.ms": "60000", "log.cleaner.backoff.ms": "500",
            "log.cleaner.threads": "1", "log.cleaner.dedupe.buffer.size": str(4 * 1024 * 1024),
            "num.network.threads": "2", "num.io.threads": "4", "num.recovery.threads.per.data.dir": "1",
            "message.max.bytes": str(16 * 1024 * 1024), "replica.fetch.max.bytes": str(16 * 1024 * 1024),
        }
        # A SASL listener needs a server login module per mechanism (no file: inline JAAS).
        sasl_listeners = ["sasl", *(["client"] if self.authentication else [])]
        for listener in sasl_listeners:
            for mechanism in SCRAM_MECHANISMS:
                props[f"listener.name.{listener}.{mechanism.lower()}.sasl.jaas.config"] = \
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        return props

    def _write_config(self) -> Path:
        path = self.dir / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in self.properties().items()))
        (self.dir / "log4j2.yaml").write_text(LOG4J2)
        return path

    def _java(self, main: str, *args: str) -> list[str]:
        flags = JVM_FLAGS + (FAST_START_FLAGS if self.fast_start else [])
        return [java_binary(), *flags, f"-Dlog4j2.configurationFile={self.dir / 'log4j2.yaml'}",
                "-cp", kafka_classpath(), main, *args]

    def _format(self, config: Path) -> None:
        """A fresh KRaft log directory, with the SCRAM user already in its metadata."""
        scram = [arg for mechanism in SCRAM_MECHANISMS
                 for arg in ("--add-scram", f"{mechanism}=[name={SCRAM_USER},password={SCRAM_PASSWORD}]")]
        command = self._java("kafka.tools.StorageTool", "format", "--config", str(config),
                             "--cluster-id", cluster_id(), "--ignore-formatted",
                             *scram)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"formatting the Kafka log directory failed:\n{done.stdout}\n{done.stderr}")
        self._formatted = True

    # -- life cycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> "KafkaBroker":
        config = self._write_config()
        if not self._formatted:
            self._format(config)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self._java("kafka.Kafka", str(config)), stdout=self._log,
                                     stderr=subprocess.STDOUT)
        try:
            _run(self._wait_ready(timeout))
        except BaseException:
            self.stop()  # never leave a broker behind when start fails
            raise
        return self

    async def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not await self._ready():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"kafka exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"kafka did not answer within {timeout}s:\n{self.log()}")
            await asyncio.sleep(0.2)

    async def _ready(self) -> bool:
        """Ready means it answers a Kafka request with itself as a live broker, not merely that
        the port is open."""
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False  # not listening yet: no client, so no connection errors in the log
        writer.close()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2000,
                                    **self.client_options())
        try:
            await admin.start()
            return bool((await admin.describe_cluster()).get("brokers"))
        except Exception:  # noqa: BLE001 - not ready yet, whatever the reason
            return False
        finally:
            await admin.close()

    def client_options(self) -> dict[str, Any]:
        """What an aiokafka client needs to talk to this broker (the SCRAM login when authenticated)."""
        if not self.authentication:
            return {}
        return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
                "sasl_plain_username": SCRAM_USER, "sasl_plain_password": SCRAM_PASSWORD}

    def restart(self, hard: bool = False, timeout: float = 180.0) -> None:
        """A real bounce on the same ports and log directory: what was acknowledged is kept.
        `hard=True` kills the JVM (SIGKILL), so the next start recovers the log."""
        self._end(hard)
        self.start(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _end(self, hard: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self.proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        self._end()

    def __enter__(self) -> "KafkaBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- topics -------------------------------------------------------------------------------
    def create_topic(self, name: str, partitions: int = 3, config: dict[str, str] | None = None) -> None:
        """Auto-creation is off: tests create each topic they write or read (an existing one is kept)."""
        _run(self._create_topic(name, partitions, config or {}))

    async def _create_topic(self, name: str, partitions: int, config: dict[str, str]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.client_options())
        await admin.start()
        try:
            response = await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=config)])
            for topic, code, *_ in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"creating topic {topic} failed with Kafka error code {code}")
        except TopicAlreadyExistsError:
            pass
        finally:
            await admin.close()

    def reset(self) -> None:
        """Running, not paused, without the topics and consumer groups tests made: what the next
        test expects of a new broker. Groups go too, since a group's committed offsets would
        otherwise point a consumer of a new topic of the same name past its first records."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        else:
            self.resume()
        self.delete_topics(self.topics())
        _run(self._admin(_delete_groups))

    def topics(self) -> list[str]:
        return [t for t in _run(self._admin(lambda admin: admin.list_topics())) if t not in INTERNAL_TOPICS]

    def delete_topics(self, names: list[str]) -> None:
        if names:
            _run(self._admin(lambda admin: admin.delete_topics(names)))

    async def _admin(self, call: Callable[[AIOKafkaAdminClient], Coroutine[Any, Any, T]]) -> T:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.client_options())
        await admin.start()
        try:
            return await call(admin)
        finally:
            await admin.close()


async def _delete_groups(admin: AIOKafkaAdminClient) -> None:
    """Every consumer group, empty by now (a group with live members is left, with an error code)."""
    groups = [group[0] for group in await admin.list_consumer_groups()]
    if groups:
        # aiokafka has no public call for it; node 1, the only broker, coordinates every group.
        await admin._send_request(DeleteGroupsRequest(groups), 1)  # noqa: SLF001


# -- reading and writing topics -----------------------------------------------------------------
MAX_FETCH_BYTES = 8_000_000


@dataclass
class Message:
    key: bytes | None
    value: bytes
    request: ExportTraceServiceRequest

    def span_ids(self) -> list[str]:
        return [span.span_id.hex() for span in iter_spans(self.request)]


def decode_proto(value: bytes) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(value)


def decode_json(value: bytes) -> ExportTraceServiceRequest:
    return otlp_json.decode(value, ExportTraceServiceRequest)


def read_topic(broker: KafkaBroker, topic: str, want: set[str], decode: Callable[[bytes], Any] = decode_proto,
               timeout: float = 60.0) -> list[Message]:
    """Every message of `topic` from the start, read until all of `want` (span ids) are seen."""
    return _run(_read_topic(broker.bootstrap, topic, want, decode, timeout))


async def _read_topic(bootstrap: str, topic: str, want: set[str], decode: Callable[[bytes], Any],
                      timeout: float) -> list[Message]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, max_partition_fetch_bytes=MAX_FETCH_BYTES)
    await consumer.start()
    messages: list[Message] = []
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while not want <= seen:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(want - seen)} of {len(want)} spans never reached topic {topic}")
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    message = Message(record.key, record.value, decode(record.value))
                    messages.append(message)
                    seen.update(message.span_ids())
    finally:
        await consumer.stop()
    return messages


def produce(broker: KafkaBroker, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    """Produce (key, value) records in order, each acknowledged by the broker (acks=all)."""
    _run(_produce(broker.bootstrap, topic, records))


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


@dataclass
class TailRecord:
    topic: str
    key: bytes | None
    value: bytes
    read_at: float  # wall clock when the consumer got it

    def json(self) -> Any:
        return json.loads(self.value)


class TopicTail:
    """What a user's consumer sees: reads `topics` from the start in a background thread (its
    own event loop, no consumer group) and keeps every record, with the time it was read.
    Create the topics first: a consumer without a group is assigned the partitions that
    exist when it starts."""

    def __init__(self, broker: KafkaBroker, *topics: str) -> None:
        self.bootstrap = broker.bootstrap
        self.topics = topics
        self._records: list[TailRecord] = []
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._thread_main, name="topic-tail", daemon=True)

    def start(self, timeout: float = 30.0) -> "TopicTail":
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            self.stop()
            raise RuntimeError(f"could not start a consumer of {self.topics}: {self._error}")
        return self

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._consume())
        except BaseException as exc:  # noqa: BLE001 - reported by start() and records()
            self._error = exc
            self._ready.set()

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(*self.topics, bootstrap_servers=self.bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    max_partition_fetch_bytes=MAX_FETCH_BYTES)
        await consumer.start()
        try:
            self._ready.set()
            while not self._stopping.is_set():
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    now = time.time()
                    self._records.extend(TailRecord(r.topic, r.key, r.value, now) for r in records)
        finally:
            await consumer.stop()

    def records(self, topic: str | None = None) -> list[TailRecord]:
        if self._error is not None:
            raise AssertionError(f"the consumer of {self.topics} failed: {self._error!r}")
        return [r for r in list(self._records) if topic is None or r.topic == topic]

    def documents(self, topic: str) -> list[dict[str, Any]]:
        """The JSON documents read from `topic` so far, in the order read."""
        return [r.json() for r in self.records(topic)]

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def __enter__(self) -> "TopicTail":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

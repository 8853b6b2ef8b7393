"""Checkpoints of the triggers connector: its detectors' state per subject key, its open
episodes and its event clock, written every `interval` and on shutdown, read back on start.

    connectors:
      triggers:
        checkpoint: {storage: file_storage, interval: 5s}          # one daemon
        checkpoint: {kafka: {brokers: [kafka:9092]}, interval: 5s}  # a compacted changelog topic

One record per key: `<detector>|<subject key as JSON>` (`episodes|<episode key>` for an open
episode, `clock|` for the event clock), its value `{"v": 1, "s": <state>}` in JSON. Only
records that changed since the last successful write are written, and a key that is gone
(its window emptied, its episode resolved, it was evicted) is written as a tombstone, so the
changelog topic compacts to the live state. A checkpoint is taken between evaluations, never
on the span path; a write that fails or is over `max_bytes` is counted
(`agentdbg_trigger_checkpoint_failures_total{reason}`), logged, and retried with the next one.
So a crash loses at most the last `interval` of detector state (plus the batches waiting for
the watermark: `allowed_lateness`). A record of another version, or one that cannot be read,
is skipped and counted (`reason="unreadable"`) and the rest is restored.
"""
from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any, Callable, Protocol

import orjson
from prometheus_client import Counter
from pydantic import Field, PositiveInt, model_validator

from connectors.triggers.checkpoint_state import key_of, key_text
from pipeline.component import StrictConfig
from pipeline.config.units import ByteSize, CommaList, Duration
from pipeline.private_files import open_private
from pipeline.telemetry.metrics import REGISTRY

log = logging.getLogger("agentdbg.connector.triggers")
VERSION = 1
EPISODES, CLOCK = "episodes", "clock"
Records = dict[str, bytes]  # record key -> encoded value
Accept = Callable[[str, Any], bool]  # (detector kind or "episodes", key) -> restore it here?

failures = Counter("agentdbg_trigger_checkpoint_failures",
                   "Checkpoint writes or reads of the triggers connector that failed, by reason: write "
                   "(the store refused or timed out), too_large (over max_bytes), read, unreadable (a record "
                   "skipped on restore).", ["connector", "reason"], registry=REGISTRY)
written = Counter("agentdbg_trigger_checkpoint_records",
                  "Checkpoint records written by the triggers connector (tombstones included).",
                  ["connector"], registry=REGISTRY)


class ChangelogConfig(StrictConfig):
    """A Kafka compacted topic (`cleanup.policy=compact`), created when it is missing."""

    brokers: CommaList = Field(default_factory=lambda: ["localhost:9092"], min_length=1)
    topic: str = "agentdbg.triggers.changelog"
    partitions: PositiveInt = 1
    replication_factor: PositiveInt = 1
    timeout: Duration = 10.0


class CheckpointConfig(StrictConfig):
    storage: str | None = None  # a file_storage extension id
    kafka: ChangelogConfig | None = None
    interval: Duration = 5.0
    max_bytes: ByteSize = 64 * 1024 * 1024

    @model_validator(mode="after")
    def _one_store(self) -> CheckpointConfig:
        if (self.storage is None) == (self.kafka is None):
            raise ValueError("checkpoint needs exactly one of storage (a file_storage extension) or kafka")
        return self


class Store(Protocol):
    async def open(self) -> None: ...

    async def load(self) -> Records:
        """Every live record (tombstones applied)."""
        ...

    async def write(self, changed: dict[str, bytes | None]) -> None:
        """Write records (None: a tombstone); raises on failure, when nothing is known written."""
        ...

    async def close(self) -> None: ...


class FileStore:
    """One JSON file in a file_storage directory, replaced whole (write, then rename) each time."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "checkpoint.json"
        self.records: Records = {}

    async def open(self) -> None:
        pass

    async def load(self) -> Records:
        if not self.path.exists():
            return {}
        data = await asyncio.to_thread(self.path.read_bytes)
        self.records = {key: value.encode() for key, value in orjson.loads(data).items()}
        return dict(self.records)

    async def write(self, changed: dict[str, bytes | None]) -> None:
        records = dict(self.records)
        for key, value in changed.items():
            if value is None:
                records.pop(key, None)
            else:
                records[key] = value
        body = orjson.dumps({key: value.decode() for key, value in records.items()})
        await asyncio.to_thread(self._replace, body)
        self.records = records

    def _replace(self, body: bytes) -> None:
        temp = self.path.with_suffix(".tmp")
        with open_private(temp, "wb") as handle:
            handle.write(body)
        os.replace(temp, self.path)

    async def close(self) -> None:
        pass


def encode(state: Any) -> bytes:
    return orjson.dumps({"v": VERSION, "s": state})


def decode(value: bytes) -> Any:
    body = orjson.loads(value)
    if not isinstance(body, dict) or body.get("v") != VERSION:
        raise ValueError(f"checkpoint record of version {body.get('v') if isinstance(body, dict) else '?'}")
    return body["s"]


def encode_records(state: dict[str, dict[Any, Any]]) -> Records:
    """One encoded record per key of `state` (`{detector: {key: JSON value}}`)."""
    return {record_key(detector, key): encode(value) for detector, keys in state.items()
            for key, value in keys.items()}


def record_key(detector: str, key: Any) -> str:
    return f"{detector}|{key if detector in (EPISODES, CLOCK) else key_text(key)}"


def split_key(record: str) -> tuple[str, Any]:
    detector, _, text = record.partition("|")
    return detector, text if detector in (EPISODES, CLOCK) else key_of(text)


class Checkpointer:
    """Writes what changed since the last write; reads everything back into groups by detector."""

    def __init__(self, connector: str, store: Store, max_bytes: int) -> None:
        self.connector, self.store, self.max_bytes = connector, store, max_bytes
        self.last: dict[str, int] = {}  # record key -> hash of the value last written

    async def save(self, records: Records) -> bool:
        """Write the changes of `records` (the whole current state); False when it failed (counted)."""
        if sum(map(len, records.values())) > self.max_bytes:
            failures.labels(self.connector, "too_large").inc()
            log.error("trigger checkpoint over max_bytes; not written", extra={"kv": {"records": len(records)}})
            return False
        hashes = {key: hash(value) for key, value in records.items()}
        changed: dict[str, bytes | None] = {k: records[k] for k, h in hashes.items() if self.last.get(k) != h}
        changed.update((key, None) for key in self.last if key not in records)
        if not changed:
            return True
        try:
            await self.store.write(changed)
        except Exception as exc:
            failures.labels(self.connector, "write").inc()
            log.error("trigger checkpoint write failed; retried with the next one",
                      extra={"kv": {"error": str(exc) or type(exc).__name__}})
            return False
        self.last = hashes
        written.labels(self.connector).inc(len(changed))
        return True

    async def load(self, accept: Accept | None = None) -> dict[str, dict[Any, Any]]:
        """`{detector: {key: state}}` of the records `accept` takes (all without it)."""
        try:
            records = await self.store.load()
        except Exception as exc:
            failures.labels(self.connector, "read").inc()
            log.error("trigger checkpoint could not be read; starting empty", extra={"kv": {"error": str(exc)}})
            return {}
        out: dict[str, dict[Any, Any]] = {}
        for record, value in records.items():
            try:
                detector, key = split_key(record)
                if accept is None or detector == CLOCK or accept(detector, key):
                    out.setdefault(detector, {})[key] = decode(value)
                    self.last[record] = hash(value)
            except ValueError as exc:
                failures.labels(self.connector, "unreadable").inc()
                log.warning("skipped an unreadable trigger checkpoint record",
                            extra={"kv": {"record": record[:200], "error": str(exc)}})
        return out

    def forget(self, records: list[str]) -> None:
        """Keys handed to another instance: not tombstoned by this one when they leave its state."""
        for record in records:
            self.last.pop(record, None)

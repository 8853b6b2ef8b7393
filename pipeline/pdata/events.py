"""`Events`: the batch that flows through an `events` pipeline.

Events are our own versioned JSON documents (trigger events `agentdbg.trigger/v1`, safety
decisions `agentdbg.decision/v1`; docs/contracts.md). They are few compared with spans, so a
batch simply holds the documents as dicts; each is encoded to JSON once and cached.
Its `item_count` (the `Batch` protocol, batch.py) is the number of documents.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Iterable

import orjson


def rfc3339(ts: float) -> str:
    """A UNIX time as the RFC 3339 UTC text our documents use (millisecond precision)."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def document_key(document: dict[str, Any]) -> str:
    """The Kafka key of a document: its subject key (trigger events) or target (decisions)."""
    key = document.get("subject_key")
    if key is None:
        target = document.get("target")
        key = target if isinstance(target, str) else orjson.dumps(target, option=orjson.OPT_SORT_KEYS).decode()
    return str(key or "")


class Events:
    __slots__ = ("documents", "received_at", "_encoded")

    def __init__(self, documents: Iterable[dict[str, Any]], received_at: float | None = None) -> None:
        self.documents = list(documents)
        self.received_at = time.time() if received_at is None else received_at
        self._encoded: list[bytes] | None = None

    @property
    def item_count(self) -> int:
        return len(self.documents)

    def clone(self) -> "Events":
        """Pipelines do not change documents in place, so a clone may share them."""
        return Events(self.documents, self.received_at)

    def encoded(self) -> list[bytes]:
        if self._encoded is None:
            self._encoded = [orjson.dumps(doc) for doc in self.documents]
        return self._encoded

    def kafka_records(self) -> list[tuple[bytes, bytes]]:
        return [(document_key(doc).encode(), value) for doc, value in zip(self.documents, self.encoded())]

    def to_json_line(self) -> bytes:
        return b"".join(value + b"\n" for value in self.encoded())

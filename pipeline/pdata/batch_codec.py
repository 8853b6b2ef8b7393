"""Encode any pipeline batch to bytes and back, for on-disk queues.

One tag byte names the batch type; OTLP batches keep their wire bytes, event batches their
JSON lines, so nothing is re-serialised to store or reload a batch.
"""
from __future__ import annotations

from typing import Any

import orjson

from pipeline.pdata.events import Events
from pipeline.pdata.metrics import Metrics
from pipeline.pdata.traces import Traces

_TAGS = {Traces: b"T", Metrics: b"M", Events: b"E"}


def encode(batch: Any) -> bytes:
    tag, body = encode_parts(batch)
    return tag + body


def encode_parts(batch: Any) -> tuple[bytes, bytes]:
    """The tag and the body, for writers that send both without joining them (writev)."""
    body = batch.to_json_line() if isinstance(batch, Events) else batch.wire()
    return _TAGS[type(batch)], body


def decode(data: bytes) -> Any:
    tag, body = data[:1], data[1:]
    if tag == b"T":
        return Traces(None, body)
    if tag == b"M":
        return Metrics(None, body)
    if tag == b"E":
        return Events(orjson.loads(line) for line in body.splitlines() if line)
    raise ValueError(f"unknown batch tag {tag!r}")

"""Encode any pipeline batch to bytes and back, for on-disk queues.

One tag byte names the batch type; OTLP batches keep their wire bytes, event batches their
JSON lines, so nothing is re-serialised to store or reload a batch.
"""
from __future__ import annotations

import orjson

from pipeline.pdata.batch import Batch
from pipeline.pdata.events import Events
from pipeline.pdata.logs import Logs
from pipeline.pdata.metrics import Metrics
from pipeline.pdata.traces import Traces

_TAGS = {Traces: b"T", Metrics: b"M", Logs: b"L", Events: b"E"}


def encode(batch: Batch) -> bytes:
    tag, body = encode_parts(batch)
    return tag + body


def encode_parts(batch: Batch) -> tuple[bytes, bytes]:
    """The tag and the body, for writers that send both without joining them (writev)."""
    if isinstance(batch, Events):
        body = batch.to_json_line()
    elif isinstance(batch, (Traces, Metrics, Logs)):
        body = batch.wire()
    else:
        raise TypeError(f"no encoding for a {type(batch).__name__} batch")
    return _TAGS[type(batch)], body


def decode(data: bytes) -> Traces | Metrics | Logs | Events:
    tag, body = data[:1], data[1:]
    if tag == b"T":
        return Traces(None, body)
    if tag == b"M":
        return Metrics(None, body)
    if tag == b"L":
        return Logs(None, body)
    if tag == b"E":
        return Events(orjson.loads(line) for line in body.splitlines() if line)
    raise ValueError(f"unknown batch tag {tag!r}")

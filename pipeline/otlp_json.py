"""OTLP/JSON, as the spec defines it on top of proto3 JSON.

Differences from plain proto3 JSON that matter here: trace and span ids are hex strings,
not base64; enums may be integers; 64-bit integers may be strings; unknown fields are
ignored. This is the JSON path only (receiver, file exporter); the hot path stays binary.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any, Callable, TypeVar

import orjson
from google.protobuf import json_format
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

# (container key, list of id fields) walked in an OTLP trace/metric document.
_TRACE_ID_KEYS = ("traceId", "trace_id")
_SPAN_ID_KEYS = ("spanId", "span_id", "parentSpanId", "parent_span_id")


class JsonDecodeError(ValueError):
    pass


def decode(data: bytes, message_type: type[M]) -> M:
    """Parse an OTLP/JSON request body into its protobuf message."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise JsonDecodeError(f"invalid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise JsonDecodeError("invalid OTLP/JSON: the top level must be an object")
    _walk_ids(document, _hex_to_base64)
    try:
        return json_format.ParseDict(document, message_type(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise JsonDecodeError(f"invalid OTLP/JSON: {exc}") from exc


def to_document(message: Message) -> dict[str, Any]:
    """The OTLP/JSON document of a message (ids as hex, camelCase names, enums as integers)."""
    # The OTLP spec: "Values of enum fields MUST be encoded as integer values."
    document = json_format.MessageToDict(message, preserving_proto_field_name=False,
                                         use_integers_for_enums=True)
    _walk_ids(document, _base64_to_hex)
    return document


def encode(message: Message) -> bytes:
    return orjson.dumps(to_document(message))


def _walk_ids(node: Any, convert: Callable[[str, str], str]) -> None:
    """Convert every id field in place, wherever it sits (spans, links, exemplars)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and (key in _TRACE_ID_KEYS or key in _SPAN_ID_KEYS):
                node[key] = convert(key, value)
            elif isinstance(value, (dict, list)) and key not in ("attributes", "resource"):
                _walk_ids(value, convert)
    elif isinstance(node, list):
        for item in node:
            _walk_ids(item, convert)


def _hex_to_base64(key: str, value: str) -> str:
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError as exc:
        raise JsonDecodeError(f"invalid OTLP/JSON: {key} {value!r} is not a hex string") from exc


def _base64_to_hex(_: str, value: str) -> str:
    try:
        return base64.b64decode(value).hex()
    except binascii.Error:
        return value

"""OTLP/JSON, as the spec defines it on top of proto3 JSON.

Differences from plain proto3 JSON that matter here: trace and span ids are hex strings,
not base64; enums may be integers; 64-bit integers may be strings; unknown fields are
ignored. This is the JSON path only (receiver, file exporter); the hot path stays binary.

`decode` promises: for any bytes it returns the message or raises `JsonDecodeError` (the
receivers answer that with 400 / INVALID_ARGUMENT), never anything else. A document nested
more than `MAX_DEPTH` levels deep is refused up front with a short message: that is the
nesting the protobuf decoder accepts, so JSON and protobuf input meet the same bound, and
the document is walked without recursion, so no depth reaches Python's recursion limit.
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
_ID_KEYS = frozenset(_TRACE_ID_KEYS + _SPAN_ID_KEYS)
# Levels of nesting below the top object (see _walk_ids): what upb allows binary input (the
# top message and 100 levels of messages in it), so every request the protobuf path takes can
# be written as OTLP/JSON (file exporter, Kafka otlp_json) and read back, and the other way.
MAX_DEPTH = 100


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
    _walk_ids(document, _hex_to_base64, max_depth=MAX_DEPTH)
    try:
        # json_format counts the top message too.
        return json_format.ParseDict(document, message_type(), ignore_unknown_fields=True,
                                     max_recursion_depth=MAX_DEPTH + 1)
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


def _walk_ids(node: Any, convert: Callable[[str, str], str], max_depth: int | None = None) -> None:
    """Convert every id field in place, wherever it sits (spans, links, exemplars).

    Iterative, so a deep document cannot exhaust the stack. With `max_depth`, a document
    nested deeper than that is refused (JsonDecodeError) before anything else reads it. The
    depth counts what protobuf counts: each object below the top one is a level, and an
    array is one only inside another array (the array of a repeated field belongs to its
    object). Attribute values are walked for depth too, but their keys are never ids.
    """
    stack: list[tuple[Any, int, bool]] = [(node, 0, True)]  # (value, depth, ids may sit here)
    while stack:
        value, depth, ids = stack.pop()
        if max_depth is not None and depth > max_depth:
            raise JsonDecodeError(f"invalid OTLP/JSON: nested more than {max_depth} levels deep")
        if isinstance(value, dict):
            for key, item in value.items():
                if ids and isinstance(item, str) and key in _ID_KEYS:
                    value[key] = convert(key, item)
                elif isinstance(item, (dict, list)):
                    below = depth + 1 if isinstance(item, dict) else depth
                    stack.append((item, below, ids and key not in ("attributes", "resource")))
        elif isinstance(value, list):
            stack.extend((item, depth + 1, ids) for item in value if isinstance(item, (dict, list)))


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

"""OTLP `AnyValue` to Python and to text, and how an attribute key looks on the wire.

Used by `SpanColumns` (spans.py), the ClickHouse insert columns, the trigger detectors and
the genai_metrics exporter: every reader of attribute values turns them into text or Python
values the same way.

AnyValue to text follows otelcol's `pcommon.Value.AsString`: strings as they are, ints in
decimal, doubles in shortest fixed notation (`1.5`, `1000000000000000000000`, `NaN`,
`+Inf`), bools `true`/`false`, bytes base64, arrays and kvlists as compact JSON (kvlist
keys sorted), an empty value as "". JSON floats are written by orjson (`1.0` where Go
writes `1`); that is the one known difference.
"""
from __future__ import annotations

import base64
import math
from decimal import Decimal
from typing import Any, Callable, Iterable

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from pipeline.pdata.wire import varint

Value = str | int | float | bool | bytes | list | dict | None


def format_double(value: float) -> str:
    """Go's `strconv.FormatFloat(v, 'f', -1, 64)`: shortest digits, never an exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    if "e" in text:
        return format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def _raw_array(value: AnyValue) -> list:
    return [any_value_raw(item) for item in value.array_value.values]


def _raw_kvlist(value: AnyValue) -> dict:
    return {kv.key: any_value_raw(kv.value) for kv in value.kvlist_value.values}


def _raw_bytes(value: AnyValue) -> str:
    return base64.b64encode(value.bytes_value).decode("ascii")


_RAW: dict[str | None, Callable[[AnyValue], Any]] = {
    "string_value": lambda v: v.string_value,
    "int_value": lambda v: v.int_value,
    "double_value": lambda v: v.double_value,
    "bool_value": lambda v: v.bool_value,
    "bytes_value": _raw_bytes,
    "array_value": _raw_array,
    "kvlist_value": _raw_kvlist,
    None: lambda v: None,
}

# By `AnyValue.WhichOneof("value")`: the converters, for loops that read the kind once themselves.
TEXT_OF: dict[str | None, Callable[[AnyValue], str]] = {
    "string_value": lambda v: v.string_value,
    "int_value": lambda v: str(v.int_value),
    "double_value": lambda v: format_double(v.double_value),
    "bool_value": lambda v: "true" if v.bool_value else "false",
    "bytes_value": _raw_bytes,
    "array_value": lambda v: orjson.dumps(_raw_array(v)).decode(),
    "kvlist_value": lambda v: orjson.dumps(_raw_kvlist(v), option=orjson.OPT_SORT_KEYS).decode(),
    None: lambda v: "",
}
TYPED_OF: dict[str | None, Callable[[AnyValue], Any]] = {**_RAW, "bytes_value": lambda v: v.bytes_value}


def any_value_raw(value: AnyValue) -> Any:
    """The JSON-ready Python value (bytes as base64), as pcommon's `AsRaw` gives it."""
    return _RAW[value.WhichOneof("value")](value)


def any_value_text(value: AnyValue) -> str:
    """The text ClickHouse's `Map(String, String)` stores for a value (otelcol's AsString)."""
    text = value.string_value
    if text:
        return text
    return TEXT_OF[value.WhichOneof("value")](value)


def any_value_typed(value: AnyValue) -> Value:
    """The Python value: str, int, float, bool, bytes, list, dict, or None when empty."""
    return TYPED_OF[value.WhichOneof("value")](value)


def attribute_map(attributes: Iterable) -> dict[str, str]:
    """`{key: text}` of a repeated KeyValue (later duplicates win)."""
    out: dict[str, str] = {}
    for kv in attributes:
        value = kv.value
        text = value.string_value
        out[kv.key] = text if text else TEXT_OF[value.WhichOneof("value")](value)
    return out


def key_field(key: str) -> bytes:
    """How a KeyValue's key is encoded (field 1, length-delimited): searching the wire bytes
    for this, not the bare key, keeps `tool.name` from matching inside `gen_ai.tool.name`."""
    data = key.encode()
    return b"\x0a" + varint(len(data)) + data

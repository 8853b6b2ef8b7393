"""Reading and writing OTLP attribute values without converting spans to dicts.

Instrumentations disagree on types (token counts arrive as ints, doubles or strings), so
the readers accept any scalar that means the value and return None otherwise.
"""
from __future__ import annotations

from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def as_str(value: AnyValue | None) -> str | None:
    """A non-empty string, or None. Numbers are rendered (some SDKs send ids as ints)."""
    if value is None:
        return None
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value or None
    if kind == "int_value":
        return str(value.int_value)
    return None


def as_int(value: AnyValue | None) -> int | None:
    """A non-negative integer count, or None."""
    if value is None:
        return None
    kind = value.WhichOneof("value")
    if kind == "int_value":
        number = value.int_value
    elif kind == "double_value":
        number = int(value.double_value)
    elif kind == "string_value":
        try:
            number = int(float(value.string_value))
        except ValueError:
            return None
    else:
        return None
    return number if number >= 0 else None


def as_float(value: AnyValue | None) -> float | None:
    """A non-negative finite number, or None."""
    if value is None:
        return None
    kind = value.WhichOneof("value")
    if kind == "double_value":
        number = value.double_value
    elif kind == "int_value":
        number = float(value.int_value)
    elif kind == "string_value":
        try:
            number = float(value.string_value)
        except ValueError:
            return None
    else:
        return None
    return number if 0 <= number < float("inf") else None


def put(span: Any, key: str, value: str | int | float) -> None:
    """Append one attribute to a span (a protobuf Span)."""
    kv = span.attributes.add()
    kv.key = key
    if isinstance(value, str):
        kv.value.string_value = value
    elif isinstance(value, bool):  # before int: bool is an int subclass
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    else:
        kv.value.double_value = float(value)

"""Reading and writing OTLP attribute values without converting spans to dicts.

The processor has the attributes it reads decoded once each, into Python scalars, by the
compiled picker (native/: `agentdbg_native.Picker`); everything after that works on plain
values. Instrumentations disagree on types (token counts arrive as ints, doubles or strings),
so the readers accept any scalar that means the value and return None otherwise.
"""
from __future__ import annotations

import struct

from pipeline.pdata.wire import varint

Scalar = str | int | float | bool | None


def text(value: Scalar) -> str | None:
    """A non-empty string, or None. Integers are rendered (some SDKs send ids as ints)."""
    if type(value) is str:
        return value or None
    if type(value) is int:
        return str(value)
    return None


def count(value: Scalar) -> int | None:
    """A non-negative integer count, or None."""
    if type(value) is int:
        return value if value >= 0 else None
    if type(value) is float or type(value) is str:
        try:
            number = int(float(value))
        except (ValueError, OverflowError):  # not a number, NaN, infinity
            return None
        return number if number >= 0 else None
    return None


def amount(value: Scalar) -> float | None:
    """A non-negative finite number, or None."""
    if type(value) is float or type(value) is int or type(value) is str:
        try:
            number = float(value)
        except ValueError:
            return None
        return number if 0 <= number < float("inf") else None
    return None


class Encoder:
    """Span attributes as protobuf wire bytes, merged into a span with one `MergeFromString`.

    Why: with upb, adding a KeyValue and setting its fields costs about 1 µs per attribute;
    merging pre-encoded bytes costs a third of that, and most values repeat (operation,
    provider, model, a trace's session id), so their bytes are encoded once and reused.
    Wire format: Span.attributes is field 9; KeyValue is {1: key, 2: AnyValue}; AnyValue is
    {1: string, 2: bool, 3: int64, 4: double}.
    """

    MAX_CACHED = 20_000  # distinct (key, string) pairs; past that the cache starts over

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str | bool], bytes] = {}
        self._names: dict[str, bytes] = {}

    def encode(self, key: str, value: str | int | float) -> bytes:
        """One attribute, ready to merge into a Span."""
        if type(value) is float or type(value) is int:  # counts and costs vary: encoded each time
            return self._entry(key, _any_value(value))
        cached = self._cache.get((key, value))  # type: ignore[arg-type]
        if cached is None:
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.clear()
            cached = self._cache[(key, value)] = self._entry(key, _any_value(value))  # type: ignore[index]
        return cached

    def _entry(self, key: str, any_value: bytes) -> bytes:
        name = self._names.get(key)
        if name is None:
            raw = key.encode()
            name = self._names[key] = b"\x0a" + varint(len(raw)) + raw + b"\x12"
        kv = name + varint(len(any_value)) + any_value
        return b"\x4a" + varint(len(kv)) + kv


def _any_value(value: str | int | float) -> bytes:
    if type(value) is str:
        data = value.encode()
        return b"\x0a" + varint(len(data)) + data
    if type(value) is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if type(value) is int:
        return b"\x18" + varint(value & 0xFFFF_FFFF_FFFF_FFFF)  # int64: negatives as two's complement
    return b"\x21" + _DOUBLE.pack(float(value))


_DOUBLE = struct.Struct("<d")

"""Protobuf wire format, by hand where parsing would cost more than it saves: the one copy.

Three readers work on encoded OTLP bytes without parsing them: the kafka exporter cuts a
request between its top-level fields (exporters/kafka/split.py), the redaction processor
finds which spans a text match lies in (processors/redaction/locate.py), and `SpanColumns`
checks whether an attribute key occurs in a batch at all (anyvalue.key_field). The genai
processor writes attributes as pre-encoded bytes (processors/genai/values.py). They all use
the varints and field framing here.

The format, as the protobuf encoding guide defines it: a message is a run of fields; each
starts with a varint tag `(field number << 3) | wire type`; wire type 0 is a varint value,
1 a fixed 8-byte value, 5 a fixed 4-byte value, 2 a varint length then that many bytes
(strings, bytes, nested messages, packed repeated fields). Types 3 and 4 (groups) are not
used by OTLP and are refused here. Varints are little-endian base-128: seven bits a byte,
the high bit set on every byte but the last.
"""
from __future__ import annotations

from typing import Iterator

VARINT = 0
FIXED64 = 1
LENGTH_DELIMITED = 2
FIXED32 = 5

_BYTE = [bytes((i,)) for i in range(0x80)]


def varint(number: int) -> bytes:
    """The varint encoding of a non-negative `number` (an int64 is passed as `n & (2**64 - 1)`)."""
    if number < 0x80:  # lengths and most counts: one or two bytes, no loop
        return _BYTE[number]
    if number < 0x4000:
        return bytes(((number & 0x7F) | 0x80, number >> 7))
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def varint_size(number: int) -> int:
    """How many bytes `varint(number)` takes."""
    return max(1, (number.bit_length() + 6) // 7)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the varint at `pos`; ValueError when the bytes end inside it."""
    result = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise ValueError("truncated protobuf varint")


def skip_value(data: bytes, pos: int, wire_type: int) -> int:
    """Where a field value of `wire_type` that starts at `pos` ends (any wire type OTLP uses)."""
    if wire_type == LENGTH_DELIMITED:
        length, pos = read_varint(data, pos)
        return pos + length
    if wire_type == VARINT:
        return read_varint(data, pos)[1]
    if wire_type == FIXED64:
        return pos + 8
    if wire_type == FIXED32:
        return pos + 4
    raise ValueError(f"unexpected protobuf wire type {wire_type} at byte {pos}")


def field_end(data: bytes, pos: int) -> int:
    """Where the whole field (tag and value) starting at `pos` ends; ValueError when truncated."""
    tag, value_start = read_varint(data, pos)
    end = skip_value(data, value_start, tag & 7)
    if end > len(data):
        raise ValueError(f"truncated protobuf field at byte {pos}")
    return end


def fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, value start, value end) of each length-delimited field in data[start:end];
    fields of other wire types are stepped over. One-byte tags and lengths, the rule in OTLP,
    are read inline: this walks every span of a batch in the redaction processor."""
    pos = start
    while pos < end:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = read_varint(data, pos)
        wire_type = tag & 7
        if wire_type == LENGTH_DELIMITED:
            length = data[pos]
            if length < 0x80:
                pos += 1
            else:
                length, pos = read_varint(data, pos)
            yield tag >> 3, pos, pos + length
            pos += length
        else:
            pos = skip_value(data, pos, wire_type)


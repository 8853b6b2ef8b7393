"""Durations and byte sizes with units, as pydantic types.

`Duration` accepts Go-style strings (`200ms`, `5s`, `1m30s`, `1h`) and plain numbers,
which are seconds; it decodes to float seconds. `ByteSize` accepts `512MiB`, `64MB`,
`1000000` and decodes to int bytes.
"""
from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, NonNegativeFloat, NonNegativeInt

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kKmMgGtT]i?[bB]?|[bB])?")
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "ki": 1024, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mi": 1024**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gi": 1024**3, "gib": 1024**3,
    "t": 1000**4, "tb": 1000**4, "ti": 1024**4, "tib": 1024**4,
}


def parse_duration(value: Any) -> Any:
    """Return seconds for a duration string; leave numbers to pydantic."""
    if isinstance(value, bool):  # YAML `true` is not one second
        raise ValueError(f"invalid duration {value!r}: use a number with a unit such as 200ms, 5s, 1m30s, 1h")
    if not isinstance(value, str):
        return value
    text = value.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {value!r}: use a number with a unit such as 200ms, 5s, 1m30s, 1h")
    return total


def parse_byte_size(value: Any) -> Any:
    """Return bytes for a size string such as `512MiB`; leave numbers to pydantic."""
    if isinstance(value, bool):  # YAML `true` is not one byte
        raise ValueError(f"invalid size {value!r}: use a number with a unit such as 512KiB, 64MiB, 1GB")
    if not isinstance(value, str):
        return value
    match = _SIZE.fullmatch(value.strip())
    if not match:
        raise ValueError(f"invalid size {value!r}: use a number with a unit such as 512KiB, 64MiB, 1GB")
    unit = (match.group(2) or "").lower()
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def comma_list(value: Any) -> Any:
    """A list as it is, or a comma-separated string (`${env:KAFKA_BROKERS}`) as its parts."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


Duration = Annotated[NonNegativeFloat, BeforeValidator(parse_duration)]
ByteSize = Annotated[NonNegativeInt, BeforeValidator(parse_byte_size)]
CommaList = Annotated[list[str], BeforeValidator(comma_list)]

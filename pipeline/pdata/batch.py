"""The batch contract (`Batch`) and `OtlpBatch`, the base of the OTLP batch types.

Every batch that flows through a pipeline, whatever its signal, is a `Batch`:
- `item_count`: how many items it holds, as otelcol counts them: spans for `Traces`, data
  points for `Metrics`, documents for `Events`. Receivers, processors and exporters count
  accepted, refused, sent and failed items with it (the metric names still say "spans");
- `received_at`: the UNIX time the receiver took the data in (a merged batch keeps the
  earliest), for latency and for windowed detectors;
- `clone()`: a wrapper of its own for another pipeline, sharing whatever it safely can;
  a fan-out gives each pipeline one, so a processor changing its batch never changes
  another pipeline's.

`OtlpBatch` keeps one OTLP export request as its wire bytes and/or its parsed (upb) message:
the bytes while nothing changed the items, so exporters that send OTLP protobuf forward them
as they are; the message parsed from them on first use. Merging concatenates wire bytes: the
top level of every OTLP export request is one repeated field, so the concatenation of two
requests is their merged request.
"""
from __future__ import annotations

import time
from typing import Any, Generic, Protocol, Self, Sequence, TypeVar, runtime_checkable

from google.protobuf.message import Message

B = TypeVar("B", bound="Batch")
M = TypeVar("M", bound=Message)


@runtime_checkable
class Batch(Protocol):
    """What every batch type keeps; see the module docstring."""

    received_at: float

    @property
    def item_count(self) -> int: ...

    def clone(self: B) -> B: ...


class OtlpBatch(Generic[M]):
    """Wire bytes and lazily parsed message of one OTLP request; subclasses name the message."""

    __slots__ = ("_wire", "_message", "_columns", "item_count", "received_at")
    request_type: type[M]

    def __init__(self, message: M | None = None, wire: bytes | None = None,
                 item_count: int | None = None, received_at: float | None = None) -> None:
        if message is None and wire is None:
            raise ValueError(f"{type(self).__name__} needs a message or wire bytes")
        self._message = message
        self._wire = wire
        self._columns: Any = None
        self.received_at = time.time() if received_at is None else received_at
        # Spans for traces, data points for metrics: `count` of the message, unless the caller knows it.
        self.item_count: int = self.count(self.message) if item_count is None else item_count

    @staticmethod
    def count(message: Any) -> int:
        """The items of `message` (each subclass names its own counting)."""
        raise NotImplementedError

    @classmethod
    def from_wire(cls, wire: bytes, received_at: float | None = None) -> Self:
        """Parse (and so validate) wire bytes; raises google.protobuf DecodeError when malformed."""
        message = cls.request_type.FromString(wire)
        return cls(message, wire, cls.count(message), received_at)

    @classmethod
    def from_message(cls, message: M, received_at: float | None = None) -> Self:
        return cls(message, None, None, received_at)

    @property
    def message(self) -> M:
        if self._message is None:
            assert self._wire is not None
            self._message = self.request_type.FromString(self._wire)
        return self._message

    def clone(self) -> Self:
        """A wrapper of its own for another pipeline: shares the bytes, parses again only if used."""
        return type(self)(None, self.wire(), self.item_count, self.received_at)

    @property
    def unchanged(self) -> bool:
        """True while the wire bytes are the ones received (or the ones last serialised)."""
        return self._wire is not None

    def wire(self) -> bytes:
        """The protobuf encoding: the original bytes when unchanged, otherwise serialised once."""
        if self._wire is None:
            self._wire = self.message.SerializeToString()
        return self._wire

    def mark_changed(self) -> None:
        """Call after changing items in `message`: drops cached bytes and columns, recounts."""
        _ = self.message  # parse before dropping the bytes
        self._wire = None
        self._columns = None
        self.item_count = self.count(self.message)

    @classmethod
    def merge(cls, batches: Sequence[Any]) -> Self:
        """One batch holding every item of `batches` (all of this type), by concatenating their wire bytes."""
        if len(batches) == 1:
            return batches[0]
        wire = b"".join(batch.wire() for batch in batches)
        return cls(None, wire, sum(b.item_count for b in batches), min(b.received_at for b in batches))

    def split(self, max_items: int) -> list[Self]:
        """Batches of at most `max_items` items each (a subclass that can split says how)."""
        return [self]

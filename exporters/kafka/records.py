"""Turning a batch into Kafka records that each fit `producer.max_message_bytes`.

Traces become OTLP `ExportTraceServiceRequest` messages (protobuf or OTLP/JSON). The
common case costs nothing: an unchanged batch that fits goes out as its received wire
bytes, and one that does not is cut between its resources' bytes
(split.py: `wire_ranges`), still without re-serialising. Anything else too large is
split by resource, scope and span (split.py: `chunk_by_size`) into several valid
requests. With a `partition_by` key family, spans are grouped per record key first (one
request per key; pipeline/partitioning.py says which spans each family keeps). Only a span
too large even alone is refused, reported as `Oversize`. Batches
that carry their own records (events pipeline: `kafka_records()` → [(key, value)]) are
passed through, refusing any too large. Logs become OTLP `ExportLogsServiceRequest` messages
the same way: the wire bytes when they fit, otherwise halves by record count (each keeping its
resource and scope) until every part fits; only a record too large even alone is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from exporters.kafka.split import chunk_by_size, split_by_key, wire_ranges
from pipeline import otlp_json
from pipeline.partitioning import KEYS, PartitionBy, by_service
from pipeline.pdata.events import Events
from pipeline.pdata.logs import Logs
from pipeline.pdata.traces import Traces, count_spans, iter_spans
from pipeline.pdata.wire import field_end

# The value's own length prefix: a varint of at most 5 bytes.
_VALUE_LENGTH_PREFIX = 5
# JSON chunks are planned on protobuf sizes scaled by the batch's JSON/proto ratio; aim a
# little under so that most chunks fit at the first try (any that do not are split again).
_JSON_HEADROOM = 0.9
# Span names are user data of any length: enough to recognise one in a log line.
_NAME_IN_LOG = 80


@dataclass(frozen=True, slots=True)
class Record:
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class Oversize:
    """Something that cannot fit one message even alone: `items` spans (or events), `size` bytes."""

    items: int
    size: int
    what: str


@dataclass(slots=True)
class Encoded:
    records: list[Record] = field(default_factory=list)
    oversize: list[Oversize] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return sum(item.items for item in self.oversize)


def value_budget(max_message_bytes: int, key: bytes | None) -> int:
    """The largest value whose record aiokafka still accepts under `max_request_size`."""
    overhead = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, b"", [])
    return max_message_bytes - overhead - _VALUE_LENGTH_PREFIX


class RecordEncoder:
    def __init__(self, encoding: Literal["otlp_proto", "otlp_json"], partition_by: PartitionBy | None,
                 max_message_bytes: int) -> None:
        self.proto = encoding == "otlp_proto"
        self.keys_of = KEYS[partition_by] if partition_by else None
        self.max_message_bytes = max_message_bytes
        self.serialise: Callable[[ExportTraceServiceRequest], bytes] = (
            ExportTraceServiceRequest.SerializeToString if self.proto else otlp_json.encode)

    def encode(self, batch: Traces | Logs | Events) -> Encoded:
        out = Encoded()
        if isinstance(batch, Events):
            self._events(batch.kafka_records(), out)
        elif isinstance(batch, Logs):
            self._logs(batch, out)
        elif self.keys_of is by_service and self.proto:
            self._by_resource(batch, out)
        elif self.keys_of is not None:
            for key, (message, count) in split_by_key(batch.message, self.keys_of(batch.columns)).items():
                self._fit(message, count, key, out)
        elif self.proto:
            self._wire(batch.wire(), out)
        else:
            self._fit(batch.message, batch.item_count, None, out)
        return out

    def _events(self, records: list[tuple[bytes, bytes]], out: Encoded) -> None:
        for key, value in records:
            if len(value) > value_budget(self.max_message_bytes, key):
                out.oversize.append(Oversize(1, len(value), f"event {key.decode(errors='replace')!r}"))
            else:
                out.records.append(Record(key, value))

    def _logs(self, batch: Logs, out: Encoded) -> None:
        value = batch.wire() if self.proto else otlp_json.encode(batch.message)
        if len(value) <= value_budget(self.max_message_bytes, None):
            out.records.append(Record(None, value))
        elif batch.item_count <= 1:
            out.oversize.append(Oversize(batch.item_count or 1, len(value), "a log record"))
        else:  # each half has fewer records, so this recursion ends
            for part in batch.split((batch.item_count + 1) // 2):
                self._logs(part, out)

    def _wire(self, wire: bytes, out: Encoded) -> None:
        """The hot path: `wire` is the received bytes while nothing changed the batch. Sent as
        they are when they fit; otherwise cut between resources without re-serialising."""
        budget = value_budget(self.max_message_bytes, None)
        if len(wire) <= budget:
            out.records.append(Record(None, wire))
            return
        for start, end, fits in wire_ranges(wire, budget):
            if fits:
                out.records.append(Record(None, wire[start:end]))
            else:  # one resource's spans over the limit: only the parsed form can be cut further
                part = ExportTraceServiceRequest.FromString(wire[start:end])
                self._fit(part, count_spans(part), None, out)

    def _by_resource(self, batch: Traces, out: Encoded) -> None:
        """`partition_by: service` without re-serialising: a resource's spans share its service,
        so each record is the batch's `resource_spans` fields of one service, cut from its wire
        bytes (one top-level field per resource, in the order of the columns' resources)."""
        wire, services = batch.wire(), batch.columns.resource_services
        parts: dict[str, list[bytes]] = {}
        pos = 0
        for service in services:
            end = field_end(wire, pos)
            parts.setdefault(service, []).append(wire[pos:end])
            pos = end
        for service, pieces in parts.items():
            key, value = service.encode(), b"".join(pieces)
            if len(value) <= value_budget(self.max_message_bytes, key):
                out.records.append(Record(key, value))
            else:
                part = ExportTraceServiceRequest.FromString(value)
                self._fit(part, count_spans(part), key, out)

    def _fit(self, message: ExportTraceServiceRequest, count: int, key: bytes | None, out: Encoded) -> None:
        """Append `message` as one record, or as several when it is too large; each part fits."""
        value = self.serialise(message)
        budget = value_budget(self.max_message_bytes, key)
        if len(value) <= budget:
            out.records.append(Record(key, value))
            return
        if count <= 1:
            out.oversize.append(Oversize(count or 1, len(value), describe_span(message)))
            return
        # Protobuf chunk sizes are exact upper bounds; JSON ones are scaled estimates.
        plan_budget = budget if self.proto else int(budget * message.ByteSize() / len(value) * _JSON_HEADROOM)
        for chunk, chunk_count, _ in chunk_by_size(message, max(plan_budget, 1)):
            # Every chunk has fewer spans than `message`, so this recursion ends.
            self._fit(chunk, chunk_count, key, out)


def describe_span(message: ExportTraceServiceRequest) -> str:
    span = next(iter_spans(message), None)
    if span is None:
        return "a request with no spans"
    name = span.name if len(span.name) <= _NAME_IN_LOG else span.name[:_NAME_IN_LOG] + "…"
    return f"span {span.span_id.hex()} {name!r} of trace {span.trace_id.hex()}"

"""`Logs`: the batch that flows through a logs pipeline (OTLP ExportLogsServiceRequest).

Same contract as `Traces` and `Metrics` (batch.py: wire bytes kept while unchanged, lazy
parse, wire-level merge); its item count is the number of log records, as otelcol counts
log items. `split` cuts a batch by record count, each piece keeping the resource and scope
of its records, so the batch processor's `send_batch_max_size` and size-bounded exporters
(Kafka) work on logs as on spans.

`salvage_log_records` is the receiver's second try at a request the protobuf decoder refused
as a whole (a record whose body is not UTF-8 text, say): the records are parsed one by one
and only those that do not parse alone are refused, so a poison record never costs the good
records of its request.
"""
from __future__ import annotations

from typing import Iterator

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from pipeline.pdata.batch import OtlpBatch
from pipeline.pdata.wire import fields


def count_log_records(message: ExportLogsServiceRequest) -> int:
    return sum(len(scope.log_records) for rl in message.resource_logs for scope in rl.scope_logs)


class Logs(OtlpBatch[ExportLogsServiceRequest]):
    __slots__ = ()
    request_type = ExportLogsServiceRequest
    count = staticmethod(count_log_records)

    def split(self, max_records: int) -> list[Logs]:
        """Batches of at most `max_records` records each, keeping resource and scope with their records."""
        if max_records <= 0 or self.item_count <= max_records:
            return [self]
        return [Logs(message, None, count, self.received_at)
                for message, count in chunk_log_records(self.message, max_records)]


def chunk_log_records(message: ExportLogsServiceRequest, max_records: int
                      ) -> Iterator[tuple[ExportLogsServiceRequest, int]]:
    """Yield requests of at most `max_records` records, in order, copying resource and scope headers."""
    out, count = ExportLogsServiceRequest(), 0
    for rl in message.resource_logs:
        target: ResourceLogs | None = None
        for scope in rl.scope_logs:
            records, start = scope.log_records, 0
            while start < len(records):
                if count == max_records:
                    yield out, count
                    out, count, target = ExportLogsServiceRequest(), 0, None
                if target is None:
                    target = out.resource_logs.add(schema_url=rl.schema_url)
                    target.resource.CopyFrom(rl.resource)
                take = min(max_records - count, len(records) - start)
                _copy_scope(target, scope).log_records.extend(records[start:start + take])
                start += take
                count += take
    if count:
        yield out, count


def _copy_scope(target: ResourceLogs, scope: ScopeLogs) -> ScopeLogs:
    copy = target.scope_logs.add(schema_url=scope.schema_url)
    copy.scope.CopyFrom(scope.scope)
    return copy


def iter_log_records(message: ExportLogsServiceRequest) -> Iterator[tuple[ResourceLogs, ScopeLogs, LogRecord]]:
    """Every record of `message` with its resource and scope, in order."""
    for rl in message.resource_logs:
        for scope in rl.scope_logs:
            for record in scope.log_records:
                yield rl, scope, record


# partial-span-processor's log records for open spans carry this attribute: `heartbeat` while the
# span is open, `stop` once it ended (its producer is the triggers connector's in-flight table,
# and drop_heartbeats keeps them out of storage: both ask `partial_event`).
PARTIAL_EVENT = "partial.event"


def partial_event(record: LogRecord) -> str | None:
    """The record's `partial.event` value, or None for a record that is not a partial-span one."""
    for kv in record.attributes:
        if kv.key == PARTIAL_EVENT:
            return kv.value.string_value
    return None


def select_log_records(batch: Logs, indices: set[int] | list[int]) -> Logs:
    """The records of `batch` at `indices` (order of `iter_log_records`), with their resources and scopes."""
    wanted = set(indices)
    out = ExportLogsServiceRequest()
    first = 0
    for rl in batch.message.resource_logs:
        target: ResourceLogs | None = None
        for scope in rl.scope_logs:
            picked = [record for index, record in enumerate(scope.log_records, first) if index in wanted]
            first += len(scope.log_records)
            if not picked:
                continue
            if target is None:
                target = out.resource_logs.add(schema_url=rl.schema_url)
                target.resource.CopyFrom(rl.resource)
            _copy_scope(target, scope).log_records.extend(picked)
    return Logs.from_message(out, batch.received_at)


def salvage_log_records(wire: bytes) -> tuple[ExportLogsServiceRequest, int, str]:
    """The request in `wire` without the log records that do not parse alone: (request, how many
    were left out, the first one's error). Resources and scopes must parse: otherwise, as for
    bytes that are not a request at all, DecodeError, and the whole request is refused."""
    out, refused, reason = ExportLogsServiceRequest(), 0, ""
    try:
        for number, start, end in _fields(wire, 0, len(wire)):
            if number != 1:
                continue
            target = out.resource_logs.add()
            for field, value_start, value_end in _fields(wire, start, end):
                value = wire[value_start:value_end]
                if field == 1:
                    target.resource.MergeFromString(value)
                elif field == 3:
                    target.schema_url = value.decode()
                elif field == 2:
                    left_out, why = _salvage_scope(wire, value_start, value_end, target.scope_logs.add())
                    refused, reason = refused + left_out, reason or why
    except (ValueError, IndexError) as exc:  # truncated, or text that is not UTF-8 outside a record
        raise DecodeError(f"cannot decode the logs request: {exc}") from None
    if not refused:
        raise DecodeError("cannot decode the logs request")
    return out, refused, reason


def _salvage_scope(wire: bytes, start: int, end: int, target: ScopeLogs) -> tuple[int, str]:
    refused, reason = 0, ""
    for field, value_start, value_end in _fields(wire, start, end):
        value = wire[value_start:value_end]
        if field == 1:
            target.scope.MergeFromString(value)
        elif field == 3:
            target.schema_url = value.decode()
        elif field == 2:
            try:
                target.log_records.append(LogRecord.FromString(value))
            except DecodeError as exc:
                refused += 1
                reason = reason or f"a log record cannot be decoded ({exc}); the others were taken"
    return refused, reason


def _fields(wire: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """`wire.fields`, refusing a field that runs past its message's end."""
    for number, value_start, value_end in fields(wire, start, end):
        if value_end > end:
            raise ValueError("a field runs past the end of its message")
        yield number, value_start, value_end

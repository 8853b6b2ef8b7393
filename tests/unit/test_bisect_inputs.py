"""What feeds the bisection: which ClickHouse errors mean "some rows are bad", and the clamping of
values a column cannot hold (pipeline/clickhouse/errors.py, schema.py "Limits", audit.py).

The exceptions are the ones the engine and clickhouse-connect raise (their text copied from
real failures: chDB 4.4's constraint error, the serializer's DataError for a 2^63 ns time).
"""
from __future__ import annotations

import time

import pytest
from clickhouse_connect.driver.exceptions import DataError, DatabaseError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.clickhouse.audit import events_columns
from pipeline.clickhouse.errors import classify
from pipeline.clickhouse.schema import CLAMPED, COLUMN_NAMES, MAX_TIME_NS, insert_columns, select_spans
from pipeline.errors import InvalidData, PermanentError, RetryableError
from pipeline.pdata.events import Events
from pipeline.pdata.traces import Traces

# Now, not a fixed date: the tables expire rows past their TTL (15 days by default).
T = int(time.time()) * 1_000_000_000


@pytest.mark.parametrize("exc", [
    DataError("Unable to create native array for column `Timestamp`: value out of range"),
    UnicodeEncodeError("utf-8", "a\udcff", 1, 2, "surrogates not allowed"),
    OverflowError("int too big to convert"),
    RuntimeError("Code: 469. DB::Exception: Constraint `no_poison` for table otel.otel_traces is violated at row 1. "
                 "(VIOLATED_CONSTRAINT)"),
    DatabaseError("HTTPDriver received ClickHouse error code 27\n Code: 27. DB::Exception: Cannot parse input. "
                  "(CANNOT_PARSE_INPUT_ASSERTION_FAILED) (version 24.8)"),
])
def test_errors_about_rows_are_invalid_data(exc):
    error = classify(exc)
    assert isinstance(error, InvalidData) and error.error_type == "invalid_data"


def test_errors_about_the_statement_refuse_the_batch_and_the_rest_retry():
    statement = classify(RuntimeError("Code: 16. DB::Exception: No such column Foo. (NO_SUCH_COLUMN_IN_TABLE)"))
    assert isinstance(statement, PermanentError) and not isinstance(statement, InvalidData)
    assert statement.error_type == "NO_SUCH_COLUMN_IN_TABLE"
    overload = classify(RuntimeError("Code: 252. DB::Exception: Too many parts. (TOO_MANY_PARTS)"))
    assert isinstance(overload, RetryableError) and overload.error_type == "TOO_MANY_PARTS"
    assert isinstance(classify(ConnectionResetError("reset by peer")), RetryableError)


def _batch(*spans: dict) -> Traces:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i, fields in enumerate(spans):
        events = fields.pop("events", [])
        span = scope.spans.add(span_id=(i + 1).to_bytes(8, "big"), name=f"s{i}", **fields)
        span.attributes.add(key="k").value.string_value = "v"
        for time in events:
            span.events.add(time_unix_nano=time)
    return Traces.from_wire(request.SerializeToString())


def test_times_past_2262_and_negative_durations_are_clamped_and_marked():
    batch = _batch({"start_time_unix_nano": T, "end_time_unix_nano": T + 5},
                   {"start_time_unix_nano": 2**64 - 1, "end_time_unix_nano": T},
                   {"start_time_unix_nano": 2**63, "end_time_unix_nano": 2**63 + 5},
                   {"start_time_unix_nano": T, "end_time_unix_nano": T + 7, "events": [2**64 - 1, T + 1]})
    data = dict(zip(COLUMN_NAMES, insert_columns(batch.columns)))
    assert data["Timestamp"] == [T, MAX_TIME_NS, MAX_TIME_NS, T]
    assert data["Duration"] == [5, 0, 5, 7]
    assert list(data["Events.Timestamp"][3]) == [MAX_TIME_NS, T + 1]
    assert [attrs.get(CLAMPED) for attrs in data["SpanAttributes"]] == [
        None, "Timestamp,Duration", "Timestamp", "Events.Timestamp"]
    assert all(attrs["k"] == "v" for attrs in data["SpanAttributes"])
    assert CLAMPED not in batch.columns.span_attributes[1]  # the batch's shared maps are not changed


def test_a_good_batch_is_passed_through_uncopied():
    batch = _batch({"start_time_unix_nano": T, "end_time_unix_nano": T + 5, "events": [T + 1]})
    data = dict(zip(COLUMN_NAMES, insert_columns(batch.columns)))
    assert data["Timestamp"] is batch.columns.start_ns
    assert data["SpanAttributes"] is batch.columns.span_attributes


def test_refused_rows_are_kept_as_sent():
    batch = _batch({"start_time_unix_nano": T, "end_time_unix_nano": T + 5},
                   {"start_time_unix_nano": 2**64 - 1, "end_time_unix_nano": T})
    kept = select_spans(batch, [1]).message
    spans = [span for rs in kept.resource_spans for ss in rs.scope_spans for span in ss.spans]
    assert [(span.name, span.start_time_unix_nano) for span in spans] == [("s1", 2**64 - 1)]


def test_audit_times_out_of_range_use_the_receive_time_and_text_is_made_utf8():
    documents = [{"id": "a\udcff", "kind": "k", "emitted_at": "9999-12-31T23:59:59Z"},
                 {"id": "b", "action": "alert", "decided_at": "2024-01-01T00:00:00Z", "target": "t"}]
    columns = events_columns(Events(documents, received_at=5.0))
    assert columns[0] == [5_000_000_000, 1_704_067_200_000_000_000]
    assert columns[2] == ["a\ufffd", "b"]
    assert columns[6][0] == '{"id":"a\ufffd","kind":"k","emitted_at":"9999-12-31T23:59:59Z"}'


async def test_a_value_the_serializer_refuses_costs_only_its_row(tmp_path, monkeypatch, caplog):
    """The chdb exporter in-process, with clamping switched off so that clickhouse-connect's serializer
    meets a 2^63 ns time (its `DataError: Unable to create native array`, raised before the engine)."""
    import asyncio
    import time

    from exporters.chdb import ChdbConfig, ChdbExporter
    from pipeline.clickhouse import schema
    from pipeline.component import ComponentID, Kind, Settings, Signal
    from pipeline.telemetry import metrics

    monkeypatch.setattr(schema, "MAX_TIME_NS", 2**64)
    exporter = ChdbExporter(Settings.make(Kind.EXPORTER, ComponentID("chdb", "serializer"), Signal.TRACES),
                            ChdbConfig(path=str(tmp_path / "chdb"), dead_letter=str(tmp_path / "dead")))
    spans = [{"start_time_unix_nano": T + i, "end_time_unix_nano": T + i + 5} for i in range(10)]
    spans[6] = {"start_time_unix_nano": 2**63, "end_time_unix_nano": 2**63}
    await exporter.start(None)
    try:
        await exporter.consume(_batch(*spans))
        while exporter.queued or exporter._in_flight_items:
            await asyncio.sleep(0.02)
        assert exporter.store is not None
        names = exporter.store.conn.query("SELECT SpanName FROM otel.otel_traces ORDER BY SpanName", "CSV").bytes()
    finally:
        await exporter.shutdown(time.monotonic() + 10)
    assert names.decode().split() == [f'"s{i}"' for i in range(10) if i != 6]
    assert metrics.REGISTRY.get_sample_value("otelcol_exporter_send_failed_spans_total",
                                             {"exporter": "chdb/serializer", "error_type": "invalid_data"}) == 1
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == ["dropping data"]
    assert len(list((tmp_path / "dead" / "chdb_serializer").glob("*.batch"))) == 1

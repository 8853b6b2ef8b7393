"""`Logs` (pipeline/pdata/logs.py): the Batch protocol on log records, split/merge, and the on-disk codec."""
from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from pipeline.pdata import batch_codec
from pipeline.pdata.batch import Batch
from pipeline.pdata.logs import Logs, iter_log_records, salvage_log_records, select_log_records


def request(resources: int = 2, scopes: int = 2, records: int = 3) -> ExportLogsServiceRequest:
    out = ExportLogsServiceRequest()
    for r in range(resources):
        rl = out.resource_logs.add(schema_url=f"res-{r}")
        rl.resource.attributes.add(key="service.name").value.string_value = f"svc-{r}"
        for s in range(scopes):
            scope = rl.scope_logs.add(schema_url=f"scope-{s}")
            scope.scope.name = f"scope-{r}-{s}"
            for i in range(records):
                record = scope.log_records.add(time_unix_nano=1000 + i, severity_number=9)
                record.body.string_value = f"{r}/{s}/{i}"
    return out


def bodies(message: ExportLogsServiceRequest) -> list[tuple[str, str, str]]:
    return [(rl.resource.attributes[0].value.string_value, scope.scope.name, record.body.string_value)
            for rl, scope, record in iter_log_records(message)]


def test_item_count_is_log_records_and_the_batch_protocol_holds():
    batch = Logs.from_message(request(), received_at=5.0)
    assert isinstance(batch, Batch)
    assert batch.item_count == 12 and batch.received_at == 5.0
    copy = batch.clone()
    assert copy is not batch and copy.item_count == 12 and copy.received_at == 5.0
    assert copy.message == batch.message


def test_merge_concatenates_wire_bytes_and_keeps_the_earliest_time():
    a, b = Logs.from_message(request(1, 1, 2), 7.0), Logs.from_message(request(2, 1, 1), 3.0)
    merged = Logs.merge([a, b])
    assert merged.item_count == 4 and merged.received_at == 3.0
    assert bodies(merged.message) == bodies(a.message) + bodies(b.message)


def test_split_keeps_every_record_in_order_with_its_resource_and_scope():
    batch = Logs.from_message(request(), 1.0)
    pieces = batch.split(5)
    assert [p.item_count for p in pieces] == [5, 5, 2]
    assert [row for p in pieces for row in bodies(p.message)] == bodies(batch.message)
    assert all(p.received_at == 1.0 for p in pieces)
    assert batch.split(0) == [batch] and batch.split(12) == [batch]


def test_select_picks_records_by_index_with_their_headers():
    batch = Logs.from_message(request(), 1.0)
    picked = select_log_records(batch, [0, 4, 11])
    assert bodies(picked.message) == [("svc-0", "scope-0-0", "0/0/0"), ("svc-0", "scope-0-1", "0/1/1"),
                                      ("svc-1", "scope-1-1", "1/1/2")]
    assert picked.message.resource_logs[1].scope_logs[0].schema_url == "scope-1"


def test_the_codec_round_trips_logs_as_their_wire_bytes():
    batch = Logs.from_message(request(), 2.0)
    decoded = batch_codec.decode(batch_codec.encode(batch))
    assert isinstance(decoded, Logs)
    assert decoded.wire() == batch.wire() and decoded.item_count == 12


def test_salvage_keeps_every_record_that_parses_alone_with_its_headers():
    message = request(2, 1, 2)
    wire = message.SerializeToString().replace(b"1/0/0", b"\xff/0/0")  # same length: frames stay
    salvaged, refused, reason = salvage_log_records(wire)
    assert refused == 1 and "cannot be decoded" in reason
    assert bodies(salvaged) == [row for row in bodies(message) if row[2] != "1/0/0"]
    assert salvaged.resource_logs[1].schema_url == "res-1"


def test_salvage_refuses_what_is_not_a_request_or_has_no_bad_record():
    wire = request(1, 1, 2).SerializeToString()
    for bad in (wire[:-3], b"\x0a\x7f\x00", wire):
        with pytest.raises(DecodeError):
            salvage_log_records(bad)

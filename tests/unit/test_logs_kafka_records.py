"""The kafka exporter's record encoder on `Logs`: the wire bytes when they fit, halves until every
part fits, only a record too large alone refused; every record kept, in order."""
from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from exporters.kafka.records import RecordEncoder
from pipeline import otlp_json
from pipeline.pdata.logs import Logs, iter_log_records


def logs(sizes: list[int]) -> Logs:
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    for index, size in enumerate(sizes):
        scope.log_records.add().body.string_value = f"{index}:" + "x" * size
    return Logs.from_message(request)


def bodies(values: list[bytes], json: bool = False) -> list[str]:
    out = []
    for value in values:
        message = (otlp_json.decode(value, ExportLogsServiceRequest) if json
                   else ExportLogsServiceRequest.FromString(value))
        out.extend(record.body.string_value.split(":")[0] for _, _, record in iter_log_records(message))
    return out


def test_a_batch_that_fits_goes_as_its_wire_bytes():
    batch = logs([10, 10])
    encoded = RecordEncoder("otlp_proto", False, 1_000_000).encode(batch)
    assert [r.value for r in encoded.records] == [batch.wire()] and not encoded.oversize


def test_a_large_batch_is_halved_until_each_part_fits_and_a_lone_giant_is_refused():
    batch = logs([3000] * 7 + [50_000] + [3000] * 3)
    for encoding in ("otlp_proto", "otlp_json"):
        encoded = RecordEncoder(encoding, False, 10_000).encode(batch)
        assert all(len(r.value) <= 10_000 for r in encoded.records)
        kept = bodies([r.value for r in encoded.records], encoding == "otlp_json")
        assert kept == [str(i) for i in range(11) if i != 7]
        assert encoded.rejected == 1

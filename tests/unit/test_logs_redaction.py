"""The `redaction` processor in a logs pipeline: log bodies and attributes (record, scope,
resource) redacted in place, new wire bytes; a batch with nothing to find keeps its bytes."""
from __future__ import annotations

import asyncio

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.pdata.anyvalue import attribute_map
from pipeline.pdata.logs import Logs
from processors.redaction import RedactionConfig, RedactionProcessor

SECRET = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"
CARD = "4111 1111 1111 1111"


class Sink:
    def __init__(self) -> None:
        self.batches: list[Logs] = []

    async def consume(self, batch: Logs) -> None:
        self.batches.append(batch)


def processor() -> tuple[RedactionProcessor, Sink]:
    sink = Sink()
    settings = Settings.make(Kind.PROCESSOR, ComponentID("redaction", "logs"), Signal.LOGS)
    return RedactionProcessor(settings, RedactionConfig(allow_all_keys=True), sink), sink


def request(body: str, attribute: str, kvlist_body: bool = False) -> ExportLogsServiceRequest:
    out = ExportLogsServiceRequest()
    rl = out.resource_logs.add()
    rl.resource.attributes.add(key="deploy.token").value.string_value = attribute
    scope = rl.scope_logs.add()
    record = scope.log_records.add(severity_text="INFO")
    if kvlist_body:
        record.body.kvlist_value.values.add(key="msg").value.string_value = body
    else:
        record.body.string_value = body
    record.attributes.add(key="card").value.string_value = attribute
    return out


def test_bodies_and_attributes_of_log_records_are_redacted_and_the_wire_bytes_are_new():
    proc, sink = processor()
    for kvlist in (False, True):
        batch = Logs.from_wire(request(f"calling with {SECRET}", f"card {CARD}", kvlist).SerializeToString())
        asyncio.run(proc.consume(batch))
        out = ExportLogsServiceRequest.FromString(sink.batches[-1].wire())
        record = out.resource_logs[0].scope_logs[0].log_records[0]
        body = record.body.kvlist_value.values[0].value.string_value if kvlist else record.body.string_value
        assert body == "calling with [REDACTED:sk_api_key]"
        assert attribute_map(record.attributes) == {"card": "card ****1111"}
        assert attribute_map(out.resource_logs[0].resource.attributes) == {"deploy.token": "card ****1111"}
        assert SECRET.encode() not in sink.batches[-1].wire() and b"4111 1111" not in sink.batches[-1].wire()


def test_a_logs_batch_with_nothing_to_find_keeps_its_wire_bytes():
    proc, sink = processor()
    wire = request("all is well", "nothing here").SerializeToString()
    batch = Logs.from_wire(wire)
    asyncio.run(proc.consume(batch))
    assert sink.batches == [batch] and batch.unchanged and batch.wire() is wire

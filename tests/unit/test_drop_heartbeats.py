"""`drop_heartbeats` (processors/drop_heartbeats.py): partial-span heartbeats out, every other record
handed on unchanged with its resource and scope."""
from __future__ import annotations

import asyncio

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.pdata.batch import Batch
from pipeline.pdata.logs import Logs, iter_log_records
from processors.drop_heartbeats import DropHeartbeats, DropHeartbeatsConfig


class Sink:
    def __init__(self) -> None:
        self.batches: list[Batch] = []

    async def consume(self, batch: Batch) -> None:
        self.batches.append(batch)


def request(events: list[list[str | None]]) -> ExportLogsServiceRequest:
    """One resource per inner list; a record per entry, with that partial.event (None: none)."""
    out = ExportLogsServiceRequest()
    for r, resource_events in enumerate(events):
        rl = out.resource_logs.add()
        rl.resource.attributes.add(key="service.name").value.string_value = f"svc-{r}"
        scope = rl.scope_logs.add()
        scope.scope.name = f"scope-{r}"
        for i, event in enumerate(resource_events):
            record = scope.log_records.add(time_unix_nano=i + 1)
            record.body.string_value = f"{r}/{i}"
            record.attributes.add(key="log.level").value.string_value = "info"
            if event is not None:
                record.attributes.add(key="partial.event").value.string_value = event
    return out


def run(batch: Logs | ExportLogsServiceRequest, **config: object) -> list[Batch]:
    """What the processor hands on of one batch."""
    sink = Sink()
    settings = Settings(id=ComponentID("drop_heartbeats"), kind=Kind.PROCESSOR, signal=Signal.LOGS)
    processor = DropHeartbeats(settings, DropHeartbeatsConfig.model_validate(config), sink)
    asyncio.run(processor.consume(batch if isinstance(batch, Logs) else Logs.from_message(batch, received_at=1.0)))
    return sink.batches


def kept(batches: list[Batch]) -> list[tuple[str, str, str]]:
    return [(rl.resource.attributes[0].value.string_value, scope.scope.name, record.body.string_value)
            for batch in batches for rl, scope, record in iter_log_records(batch.message)]  # type: ignore[attr-defined]


def test_heartbeats_and_stops_are_dropped_and_the_other_records_kept_with_their_resource_and_scope() -> None:
    message = request([["heartbeat", None, "stop"], ["heartbeat"], [None, "other"]])
    (batch,) = run(message)
    assert kept([batch]) == [("svc-0", "scope-0", "0/1"), ("svc-2", "scope-2", "2/0"), ("svc-2", "scope-2", "2/1")]
    assert batch.item_count == 3


def test_a_batch_without_heartbeats_is_handed_on_as_it_came_and_one_of_heartbeats_only_not_at_all() -> None:
    batch = Logs.from_message(request([[None, None]]), received_at=1.0)
    assert run(batch) == [batch]
    assert run(request([["heartbeat", "stop"]])) == []


def test_events_says_which_partial_events_are_dropped() -> None:
    (batch,) = run(request([["heartbeat", "stop"]]), events=["heartbeat"])
    assert kept([batch]) == [("svc-0", "scope-0", "0/1")]

"""`drop_heartbeats`: take partial-span heartbeats out of a logs pipeline.

partial-span-processor sends, for every open span, a log record every second or so whose
attribute `partial.event` is `heartbeat` (and one `stop` when the span ends), with the span so
far as its body. The triggers connector reads them to see open spans (the live deadlock), but
stored they are mostly repeats of the same span, and redacting their bodies was the largest
cost of the stream (benchmarks/RESULTS.md, live deadlock). config/default.yaml therefore
gives them a logs pipeline of their own (to triggers), and this processor, first in the
storage pipeline, drops them there before redaction; remove it from that pipeline to store
them as well.

It drops the records whose `partial.event` is one of `events` and hands on the rest of the
batch (in order, with their resources and scopes); a batch of heartbeats only is not handed
on at all. Nothing else is changed. A refusal by the next stage propagates, so the client
retries the batch and its heartbeats are dropped again. What it drops is counted as the
difference of `otelcol_processor_incoming_items` and `otelcol_processor_outgoing_items` of
this processor (pipeline/processorhelper.py).
"""
from __future__ import annotations

from pydantic import Field

from pipeline.component import Consumer, Factory, Kind, Processor, Settings, Signal, StrictConfig
from pipeline.pdata.logs import Logs, iter_log_records, partial_event, select_log_records


class DropHeartbeatsConfig(StrictConfig):
    events: list[str] = Field(default_factory=lambda: ["heartbeat", "stop"], min_length=1)


class DropHeartbeats(Processor[Logs]):
    def __init__(self, settings: Settings, config: DropHeartbeatsConfig, next_consumer: Consumer) -> None:
        super().__init__(settings, next_consumer)
        self.events = frozenset(config.events)

    async def consume(self, batch: Logs) -> None:
        kept = [index for index, (_, _, record) in enumerate(iter_log_records(batch.message))
                if partial_event(record) not in self.events]
        if len(kept) == batch.item_count:
            await self.next.consume(batch)  # nothing to drop: the batch as it came (its wire bytes kept)
        elif kept:
            await self.next.consume(select_log_records(batch, kept))


factory = Factory("drop_heartbeats", Kind.PROCESSOR, DropHeartbeatsConfig, DropHeartbeats,
                  signals=frozenset({Signal.LOGS}),
                  description="drop partial-span heartbeat log records (partial.event)")

"""Issue 10: the processor helper counts a processor's items in and out, in process.

What goes in is what the stage before offered; what goes out is what the next stage took.
The daemon-level check of every processor is tests/integration/test_processor_counts.py.
"""
from __future__ import annotations

import pytest

from pipeline import processorhelper
from pipeline.component import ComponentID, Consumer, Kind, Processor, Settings, Signal
from pipeline.errors import Refused
from pipeline.fanout import FanOut
from testkit.consumers import Recording, Refusing, sample, spans, unique

IN, OUT = "otelcol_processor_incoming_items_total", "otelcol_processor_outgoing_items_total"


def settings(signal: Signal = Signal.TRACES) -> Settings:
    return Settings.make(Kind.PROCESSOR, ComponentID(unique("counted")), signal)


def counts(s: Settings) -> tuple[float, float]:
    labels = {"processor": str(s.id), "otel_signal": (s.signal or Signal.TRACES).value}
    return sample(IN, **labels), sample(OUT, **labels)


class Holding(Processor):
    """Keeps a refused batch and re-offers it, as the batch processor does: only to the part of
    the fan-out that refused (`Refused.retry_consumer`)."""

    def __init__(self, settings: Settings, next_consumer: Consumer) -> None:
        super().__init__(settings, next_consumer)
        self.held: list[tuple[object, Consumer]] = []

    async def consume(self, batch) -> None:
        try:
            await self.next.consume(batch)
        except Refused as exc:
            self.held.append((batch, exc.retry_consumer or self.next))

    async def retry(self) -> None:
        held, self.held = self.held, []
        for batch, target in held:
            await target.consume(batch)


class Emitting(Processor):
    """Takes a batch in and hands on a batch of its own (safety's decisions for its events)."""

    async def consume(self, batch) -> None:
        await self.next.consume(spans(2))


async def test_a_pass_through_processor_counts_every_item_in_and_out_under_its_id_and_signal():
    s, sink = settings(Signal.METRICS), Recording()
    processor, entry = processorhelper.build(s, sink, lambda next_: Processor(s, next_))
    await entry.consume(spans(3))
    await entry.consume(spans(4))
    assert counts(s) == (7, 7)
    assert len(sink.ids) == 7
    assert processor.next is not sink  # the processor's `next` is the counting consumer
    assert sample(IN, processor=str(s.id), otel_signal="traces") == 0


async def test_a_refused_batch_is_counted_out_once_when_the_part_that_refused_takes_it():
    s, took, full = settings(), Recording("took"), Refusing("full", refuse=True)
    processor, entry = processorhelper.build(s, FanOut([took, full]), lambda next_: Holding(s, next_))
    batch = spans(5)
    await entry.consume(batch)
    assert counts(s) == (5, 0)  # one exporter took it, the other did not: not handed on yet
    full.refuse = False
    await processor.retry()
    assert counts(s) == (5, 5)
    assert took.ids == full.ids and len(took.ids) == 5  # each exporter has the batch once


async def test_a_refusal_the_processor_passes_up_counts_in_but_not_out():
    s = settings()
    _, entry = processorhelper.build(s, Refusing(), lambda next_: Processor(s, next_))
    with pytest.raises(Refused):
        await entry.consume(spans(3))
    assert counts(s) == (3, 0)


async def test_what_a_processor_emits_of_its_own_is_what_is_counted_out():
    s, sink = settings(), Recording()
    _, entry = processorhelper.build(s, sink, lambda next_: Emitting(s, next_))
    await entry.consume(spans(5))
    assert counts(s) == (5, 2)
    assert len(sink.ids) == 2

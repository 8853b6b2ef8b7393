"""processorhelper: the item counts every processor has without writing them.

The graph builds each processor between two thin consumers, as otelcol's service graph does
for its processors:

    upstream → CountIn → processor → CountOut → next stage

- `otelcol_processor_incoming_items{processor, otel_signal}` counts every item passed to the
  processor, whatever happens to it then (refused by the processor or by a later stage
  included: a client that retries sends it again, and it is counted again).
- `otelcol_processor_outgoing_items{processor, otel_signal}` counts every item the processor
  handed on that the next stage took (its `consume` returned). A batch the next stage refused
  is not counted; when the processor offers it again and it is taken, it is counted then,
  once, also when it is re-offered only to the exporters of a fan-out that refused
  (`Refused.retry_consumer`, which is wrapped on its way up for that reason).

So incoming minus outgoing is what the processor refused, dropped, or still holds (the batch
processor while it merges), and a processor that emits items of its own (safety's decisions
for the trigger events it takes in) has its output counted as it is. Items are the batch's
`item_count`: spans, metric data points, or event documents.

A processor counts only what is its own to count (memory_limiter's and batch's refusals in
`agentdbg_processor_refused_items`, batch's send sizes), never its in and out.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Coroutine

from prometheus_client import Counter

from pipeline.component import Consumer, Processor, Settings, Signal
from pipeline.errors import Refused
from pipeline.telemetry import metrics

if TYPE_CHECKING:
    from pipeline.pdata.batch import Batch


class CountIn:
    """The processor's entry: counts what comes in, then hands it to the processor.

    `consume` is a plain function that returns the processor's own coroutine: the count needs
    nothing after the processor ran, so the entry adds no coroutine frame to every request."""

    __slots__ = ("processor", "_counter")

    def __init__(self, processor: Consumer, counter: Counter) -> None:
        self.processor = processor
        self._counter = counter

    def consume(self, batch: Batch) -> Coroutine[Any, Any, None]:
        self._counter.inc(batch.item_count)
        return self.processor.consume(batch)


class CountOut:
    """The processor's `next`: counts what the next stage took."""

    __slots__ = ("next", "_counter")

    def __init__(self, next_consumer: Consumer, counter: Counter) -> None:
        self.next = next_consumer
        self._counter = counter

    async def consume(self, batch: Batch) -> None:
        count = batch.item_count  # before: a later stage may change the batch it was given
        try:
            await self.next.consume(batch)
        except Refused as exc:
            if exc.retry_consumer is not None:
                # The part of a fan-out that refused, retried by a caller that keeps the batch:
                # counted when it takes it. Each processor it passed on the way up wraps it once.
                exc.retry_consumer = CountOut(exc.retry_consumer, self._counter)
            raise
        self._counter.inc(count)


def build(settings: Settings, next_consumer: Consumer,
          create: Callable[[Consumer], Processor]) -> tuple[Processor, CountIn]:
    """Create a processor (`create(next)`) whose items are counted; returns the processor (for
    its lifecycle) and the consumer the stage before it must call."""
    labels = (str(settings.id), (settings.signal or Signal.TRACES).value)
    processor = create(CountOut(next_consumer, metrics.processor_outgoing_items.labels(*labels)))
    return processor, CountIn(processor, metrics.processor_incoming_items.labels(*labels))

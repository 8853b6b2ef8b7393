"""Fan-out: one batch to several consumers (the exporters of a pipeline, or the pipelines of a receiver).

Every consumer is offered the batch concurrently, so a slow one never delays the others.
The consumers that refuse (full queue) are reported in one `Refused` whose `retry_consumer`
is a fan-out of just them; those that took the batch keep it. A caller that cannot keep
the batch (a receiver) tells its client to retry, and the consumers that already took it
see it again: at-least-once, never lost. A caller that keeps the batch (the batch
processor) retries only `retry_consumer`.

Consumers that read span attributes typed (`SpanAttributeReader`: the triggers connector, the
genai_metrics exporter) name their keys; the fan-out in front of them has every traces batch
capture the union before any of them runs, so the batch's one attribute pass fills them all
(pipeline/pdata/spans.py: attribute capture).
"""
from __future__ import annotations

import asyncio
from typing import Any, Coroutine, Sequence

from pipeline.component import Consumer
from pipeline.errors import PermanentError, Refused
from pipeline.pdata.batch import Batch
from pipeline.pdata.spans import SpanAttributeReader
from pipeline.pdata.traces import Traces


class FanOut:
    def __init__(self, consumers: Sequence[Consumer], clone: bool = False) -> None:
        if not consumers:
            raise ValueError("a fan-out needs at least one consumer")
        self.consumers = list(consumers)
        # Pipelines may change spans (processors), so each gets its own wrapper of the batch;
        # exporters only read, so they share one.
        self.clone = clone
        # Fixed when the graph is built: the span attributes this fan-out's consumers read typed.
        self.captured = frozenset().union(
            *(c.span_attribute_keys for c in self.consumers if isinstance(c, SpanAttributeReader)))

    def consume(self, batch: Batch) -> Coroutine[Any, Any, None]:
        """The coroutine that offers `batch` to every consumer. With one consumer that is the
        consumer's own (a pipeline's only exporter, a receiver's only pipeline): no frame of
        the fan-out's in between."""
        if self.captured and isinstance(batch, Traces):
            batch.capture(self.captured)
        if len(self.consumers) == 1:
            return self.consumers[0].consume(batch)
        return self._offer_all(batch)

    async def _offer_all(self, batch: Batch) -> None:
        batches = [batch.clone() for _ in self.consumers[1:]] + [batch] if self.clone else [batch] * len(self.consumers)
        results = await asyncio.gather(*(c.consume(b) for c, b in zip(self.consumers, batches)),
                                       return_exceptions=True)
        refused: list[tuple[Consumer, Refused]] = []
        permanent: PermanentError | None = None
        for consumer, result in zip(self.consumers, results):
            if isinstance(result, Refused):
                refused.append((consumer, result))
            elif isinstance(result, PermanentError):
                permanent = result
            elif isinstance(result, BaseException):
                raise result
        if refused:
            raise Refused(
                "; ".join(sorted({str(err) for _, err in refused})),
                retry_after=max(err.retry_after for _, err in refused),
                overload=any(err.overload for _, err in refused),
                retry_consumer=FanOut([c for c, _ in refused], self.clone),
            )
        if permanent is not None:
            raise permanent

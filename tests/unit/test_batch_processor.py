"""The batch processor in process (processors/batch.py), on a manual clock: what it sends, when,
and what it does while the next stage refuses. The next stages are the test kit's recording
and refusing consumers (testkit/consumers.py): a full queue is a fault only timing shows."""
from __future__ import annotations

import asyncio
import logging

import pytest

from pipeline.clock import ManualClock, settle
from pipeline.component import ComponentID, Consumer, Kind, Settings, Signal
from pipeline.errors import Refused
from pipeline.fanout import FanOut
from pipeline.host import Host
from processors.batch import RETRY_INTERVAL, BatchConfig, BatchProcessor
from testkit.consumers import Recording, Refusing, Rejecting, sample, span_ids, spans, unique


async def started(next_consumer: Consumer, clock: ManualClock, **config: object) -> BatchProcessor:
    settings = Settings.make(Kind.PROCESSOR, ComponentID("batch", unique("core")), Signal.TRACES)
    settings.clock = clock
    processor = BatchProcessor(settings, BatchConfig.model_validate(config), next_consumer)
    await processor.start(Host())
    return processor


def counter(name: str, processor: BatchProcessor) -> float:
    return sample(name, processor=str(processor.id))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def test_the_timeout_sends_what_arrived_counted_from_the_first_span(clock: ManualClock) -> None:
    out = Recording()
    processor = await started(out, clock, send_batch_size=100, timeout="250ms")
    first, second = spans(3), spans(2)
    await processor.consume(first)
    await clock.advance(0.125)
    await processor.consume(second)
    await clock.advance(0.124)
    assert out.batches == []
    await clock.advance(0.001)
    assert out.ids == span_ids(first) + span_ids(second) and out.sizes == [5]
    assert counter("otelcol_processor_batch_timeout_trigger_send_total", processor) == 1
    await clock.advance(10)
    assert out.sizes == [5]  # nothing pending: no empty batch follows
    await processor.shutdown()


async def test_reaching_send_batch_size_sends_at_once_and_the_size_is_not_a_cap(clock: ManualClock) -> None:
    out = Recording()
    processor = await started(out, clock, send_batch_size=4, timeout="10s")
    batches = [spans(3), spans(2)]
    await processor.consume(batches[0])
    assert out.batches == []
    await processor.consume(batches[1])
    assert out.sizes == [5] and out.ids == span_ids(batches[0]) + span_ids(batches[1])
    assert counter("otelcol_processor_batch_batch_size_trigger_send_total", processor) == 1
    assert clock.monotonic() == 1_000.0  # no time passed
    await processor.shutdown()


async def test_send_batch_max_size_splits_a_large_batch_in_order(clock: ManualClock) -> None:
    out = Recording()
    processor = await started(out, clock, send_batch_size=4, send_batch_max_size=4)
    big = spans(10)
    await processor.consume(big)
    assert out.sizes == [4, 4, 2] and out.ids == span_ids(big)
    await processor.shutdown()


async def test_a_refused_batch_is_kept_re_offered_and_new_data_refused_retryably(clock: ManualClock) -> None:
    out = Refusing(refuse=True)
    processor = await started(out, clock, send_batch_size=4)
    kept = spans(4)
    await processor.consume(kept)  # taken by the processor although the next stage refused
    assert out.offered == 1 and out.batches == []
    with pytest.raises(Refused) as refused:
        await processor.consume(spans(1))
    assert refused.value.retry_after > 0
    assert sample("agentdbg_processor_refused_items_total", processor=str(processor.id), otel_signal="traces") == 1
    await clock.advance(RETRY_INTERVAL)
    assert out.offered == 2 and out.batches == []
    out.refuse = False
    await clock.advance(RETRY_INTERVAL)
    assert out.ids == span_ids(kept) and out.offered == 3
    later = spans(4)
    await processor.consume(later)  # nothing held any more: accepted again
    assert out.ids == span_ids(kept) + span_ids(later)
    await processor.shutdown()


async def test_only_the_exporters_that_refused_see_the_batch_again(clock: ManualClock) -> None:
    took, full = Recording("took"), Refusing("full", refuse=2)
    processor = await started(FanOut([took, full]), clock, send_batch_size=2)
    batch = spans(2)
    await processor.consume(batch)
    await clock.advance(RETRY_INTERVAL)
    assert full.offered == 2 and full.batches == []
    await clock.advance(RETRY_INTERVAL)
    assert took.ids == span_ids(batch) and full.ids == span_ids(batch)  # once each
    assert full.offered == 3
    await processor.shutdown()


async def test_a_permanent_refusal_is_logged_and_the_batch_dropped_not_held(
        clock: ManualClock, caplog: pytest.LogCaptureFixture) -> None:
    out = Rejecting()
    processor = await started(out, clock, send_batch_size=2)
    with caplog.at_level(logging.ERROR):
        await processor.consume(spans(2))
    assert "refused it permanently" in caplog.text
    await clock.advance(10 * RETRY_INTERVAL)
    assert out.offered == 1  # not retried
    await processor.consume(spans(2))  # and not refusing new data
    assert out.offered == 2
    await processor.shutdown()


async def test_shutdown_flushes_what_is_pending(clock: ManualClock) -> None:
    out = Recording()
    processor = await started(out, clock, send_batch_size=100, timeout="1h")
    pending = spans(3)
    await processor.consume(pending)
    await processor.shutdown(deadline=clock.monotonic() + 5)
    assert out.ids == span_ids(pending)
    late = spans(1)
    await processor.consume(late)  # a late request from a reloaded graph passes straight on
    assert out.ids == span_ids(pending) + span_ids(late)


async def test_shutdown_re_offers_until_the_deadline(clock: ManualClock) -> None:
    out = Refusing(refuse=True)
    processor = await started(out, clock, send_batch_size=100, timeout="1h")
    batch = spans(3)
    await processor.consume(batch)
    stopping = asyncio.create_task(processor.shutdown(deadline=clock.monotonic() + 2))
    await clock.advance(1.0)
    assert not stopping.done() and out.offered == 3  # at shutdown, then every RETRY_INTERVAL
    out.refuse = False
    await clock.advance(RETRY_INTERVAL)
    await stopping
    assert out.ids == span_ids(batch)


async def test_what_is_still_refused_at_the_deadline_is_dropped_and_logged(
        clock: ManualClock, caplog: pytest.LogCaptureFixture) -> None:
    out = Refusing(refuse=True)
    processor = await started(out, clock, send_batch_size=100, timeout="1h")
    await processor.consume(spans(3))
    with caplog.at_level(logging.ERROR):
        stopping = asyncio.create_task(processor.shutdown(deadline=clock.monotonic() + 1.2))
        await clock.advance(5)
        await stopping
    assert out.batches == [] and out.offered == 4  # at 0, 0.5, 1.0 and 1.5 s; then the deadline
    assert "dropping batches the next stage kept refusing" in caplog.text
    await settle()
    assert clock.sleepers == 0

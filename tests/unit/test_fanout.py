"""Fan-out in process (pipeline/fanout.py): one batch to several consumers, concurrently, and what
comes back when some refuse. The consumers are the test kit's recording and refusing ones."""
from __future__ import annotations

import asyncio

import pytest

from pipeline.clock import settle
from pipeline.errors import PermanentError, Refused
from pipeline.fanout import FanOut
from testkit.consumers import Recording, Refusing, Rejecting, span_ids, spans


async def test_every_consumer_gets_the_batch_and_clones_only_when_asked() -> None:
    a, b = Recording("a"), Recording("b")
    batch = spans(3)
    await FanOut([a, b]).consume(batch)
    assert a.batches[0] is b.batches[0] is batch  # exporters only read: one shared batch
    c, d = Recording("c"), Recording("d")
    await FanOut([c, d], clone=True).consume(batch)
    assert c.batches[0] is not d.batches[0]  # pipelines may change spans: each its own wrapper
    assert c.ids == d.ids == span_ids(batch)


async def test_a_slow_consumer_does_not_delay_the_others() -> None:
    release = asyncio.Event()

    class Slow(Recording):
        async def consume(self, batch: object) -> None:
            await release.wait()
            await super().consume(batch)

    slow, fast = Slow("slow"), Recording("fast")
    sending = asyncio.create_task(FanOut([slow, fast]).consume(spans(1)))
    await settle()
    assert len(fast.batches) == 1 and slow.batches == [] and not sending.done()
    release.set()
    await sending
    assert len(slow.batches) == 1


async def test_partial_refusal_names_only_the_refusers_and_the_longest_hint() -> None:
    took = Recording("took")
    full = Refusing("full", refuse=True, retry_after=2.0)
    limited = Refusing("limited", refuse=True, retry_after=5.0, overload=True)
    batch = spans(2)
    with pytest.raises(Refused) as refused:
        await FanOut([took, full, limited]).consume(batch)
    error = refused.value
    assert error.retry_after == 5.0 and error.overload
    assert "full is full" in str(error) and "limited is full" in str(error)
    assert isinstance(error.retry_consumer, FanOut) and error.retry_consumer.consumers == [full, limited]
    full.refuse = limited.refuse = False
    await error.retry_consumer.consume(batch)  # what a caller that keeps the batch does
    assert took.ids == full.ids == limited.ids == span_ids(batch)  # each exactly once


async def test_a_refusal_wins_over_a_permanent_error_so_the_batch_is_retried() -> None:
    rejecting, full = Rejecting("rejecting"), Refusing("full")
    with pytest.raises(Refused) as refused:
        await FanOut([rejecting, full]).consume(spans(1))
    assert refused.value.retry_consumer.consumers == [full]


async def test_a_permanent_error_alone_is_passed_back_after_the_others_took_the_batch() -> None:
    took = Recording("took")
    with pytest.raises(PermanentError, match="rejects"):
        await FanOut([took, Rejecting("rejecting")]).consume(spans(1))
    assert len(took.batches) == 1


async def test_an_unexpected_error_is_raised_not_swallowed() -> None:
    class Broken(Recording):
        async def consume(self, batch: object) -> None:
            raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        await FanOut([Recording(), Broken()]).consume(spans(1))


async def test_one_consumer_is_called_directly_and_none_is_a_config_error() -> None:
    only = Refusing("only", retry_after=3.0)
    with pytest.raises(Refused) as refused:
        await FanOut([only]).consume(spans(1))
    assert refused.value.retry_consumer is None and refused.value.retry_after == 3.0
    with pytest.raises(ValueError):
        FanOut([])

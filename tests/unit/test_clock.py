"""The manual clock the core's unit tests drive (pipeline/clock.py): time moves only on `advance`,
sleepers wake in order at their own instants, and `wait_for` times out on that clock."""
from __future__ import annotations

import asyncio

import pytest

from pipeline.clock import SYSTEM_CLOCK, ManualClock, settle


async def test_sleepers_wake_in_order_each_at_its_own_instant() -> None:
    clock = ManualClock(start=0.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("c", 3.0), ("a", 1.0), ("b", 2.0))]
    await settle()
    assert clock.sleepers == 3 and clock.next_wakeup() == 1.0
    await clock.advance(1.5)
    assert woke == [("a", 1.0)] and clock.monotonic() == 1.5
    await clock.advance(10.0)
    assert woke == [("a", 1.0), ("b", 2.0), ("c", 3.0)] and clock.monotonic() == 11.5
    await asyncio.gather(*tasks)


async def test_a_loop_that_sleeps_again_is_woken_at_every_step_of_one_advance() -> None:
    clock = ManualClock(start=0.0)
    ticks: list[float] = []

    async def ticker() -> None:
        for _ in range(4):
            await clock.sleep(0.5)
            ticks.append(clock.monotonic())

    task = asyncio.create_task(ticker())
    await clock.advance(1.75)
    assert ticks == [0.5, 1.0, 1.5]
    await clock.advance(0.25)
    assert ticks == [0.5, 1.0, 1.5, 2.0]
    await task


async def test_wait_for_times_out_on_the_clock_and_cancels_the_work() -> None:
    clock = ManualClock(start=0.0)
    never = asyncio.Event()
    waiter = asyncio.create_task(clock.wait_for(never.wait(), 5.0))
    await clock.advance(4.0)
    assert not waiter.done()
    await clock.advance(1.0)
    with pytest.raises(TimeoutError):
        await waiter
    assert clock.sleepers == 0


async def test_wait_for_returns_the_result_when_the_work_finishes_first() -> None:
    clock = ManualClock()

    async def work() -> str:
        await clock.sleep(1.0)
        return "done"

    waiter = asyncio.create_task(clock.wait_for(work(), 2.0))
    await clock.advance(1.0)
    assert await waiter == "done"
    assert await clock.wait_for(asyncio.sleep(0, "no timeout"), None) == "no timeout"


async def test_the_system_clock_is_real_time() -> None:
    before = SYSTEM_CLOCK.monotonic()
    await SYSTEM_CLOCK.sleep(0)
    assert SYSTEM_CLOCK.monotonic() >= before
    with pytest.raises(TimeoutError):
        await SYSTEM_CLOCK.wait_for(asyncio.Event().wait(), 0.001)

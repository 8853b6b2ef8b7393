"""The clock the core reads and sleeps on, so tests can drive time instead of waiting for it.

Components that wait (the batch processor's timeout, an exporter's retry backoff, a shutdown
deadline) read `monotonic()` and `await sleep()` from a `Clock` instead of `time` and
`asyncio`. In the daemon that is `SYSTEM_CLOCK`. A unit test gives the component a
`ManualClock`: time stands still until the test calls `advance`, which moves it forward and
wakes, in order, every sleeper whose time has come, as Vector's tests pause tokio's clock.
A test then checks what happened at each instant without a real sleep, and a slow machine
cannot make it flaky.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Awaitable, Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences mean anything."""
        ...

    def time(self) -> float:
        """UNIX seconds: what a component compares with span timestamps (the trigger detectors)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once `seconds` have passed on this clock."""
        ...

    async def wait_for(self, awaitable: Awaitable[T], timeout: float | None) -> T:
        """`awaitable`'s result, or TimeoutError (and it cancelled) once `timeout` passed on this clock."""
        ...


class SystemClock:
    """The real time of the process."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_for(self, awaitable: Awaitable[T], timeout: float | None) -> T:
        return await asyncio.wait_for(awaitable, timeout)


SYSTEM_CLOCK: Clock = SystemClock()


class ManualClock:
    """Time that moves only when the test says so (TEST CODE: never used by the daemon).

    `sleep` parks the caller until `advance` (or `advance_to`) reaches its wake-up time.
    `advance` wakes sleepers one instant at a time, earliest first, and lets the event loop
    run everything they set off before it moves on, so a component that sleeps again in a
    loop (a retry schedule) is woken at each of its instants within one `advance`.
    """

    def __init__(self, start: float = 1_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        """The same reading as monotonic: start the clock at a UNIX time to compare with timestamps."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)  # as asyncio.sleep(0): a chance for others to run
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    async def wait_for(self, awaitable: Awaitable[T], timeout: float | None) -> T:
        if timeout is None:
            return await awaitable
        work = asyncio.ensure_future(awaitable)
        timer = asyncio.ensure_future(self.sleep(timeout))
        try:
            await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            timed_out = not work.done()
            if timed_out:
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        if timed_out:
            raise TimeoutError(f"not done within {timeout} s")
        return work.result()

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock now."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    def next_wakeup(self) -> float | None:
        """When the earliest sleeper wakes, or None when nobody sleeps."""
        self._discard_cancelled()
        return self._sleepers[0][0] if self._sleepers else None

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, waking each sleeper at its own instant."""
        await self.advance_to(self._now + seconds)

    async def advance_to(self, target: float) -> None:
        await settle()
        while True:
            wakeup = self.next_wakeup()
            if wakeup is None or wakeup > target:
                break
            self._now = max(self._now, wakeup)
            while self._sleepers and self._sleepers[0][0] <= self._now:
                _, _, future = heapq.heappop(self._sleepers)
                if not future.done():
                    future.set_result(None)
            await settle()
        self._now = max(self._now, target)
        await settle()

    def _discard_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)


async def settle(rounds: int = 20) -> None:
    """Let the event loop run what is ready (tasks woken, their follow-ups) without time passing."""
    for _ in range(rounds):
        await asyncio.sleep(0)

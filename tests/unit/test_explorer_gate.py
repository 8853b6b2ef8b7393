"""The explorer's read gate (extensions/explorer/store.py `ReadGate`): a few reads run, a few wait,
the rest are refused at once with `StoreBusy` (the API's 503 + Retry-After), never queued without
bound; a read whose caller gave up keeps its slot until the engine is done with it."""
from __future__ import annotations

import asyncio

import pytest

from extensions.explorer.store import ReadGate, StoreBusy


class Reads:
    """Reads that finish only when the test says so, in the order they started."""

    def __init__(self) -> None:
        self.started: list[asyncio.Future[str]] = []

    async def read(self) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.started.append(future)
        return await future


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_past_running_and_waiting_a_read_is_refused_at_once() -> None:
    async def scenario() -> None:
        gate, reads = ReadGate(running=1, waiting=2, max_wait=60), Reads()
        admitted = [asyncio.ensure_future(gate.run(reads.read)) for _ in range(3)]
        await settle()
        assert len(reads.started) == 1 and gate.admitted == 3
        with pytest.raises(StoreBusy) as refused:
            await gate.run(reads.read)
        assert refused.value.retry_after >= 1 and "1 reads running and 2 waiting" in str(refused.value)
        for number in range(3):  # each waiting read runs when the one before it is done, in order
            reads.started[number].set_result(f"answer {number}")
            await settle()
        assert [await task for task in admitted] == ["answer 0", "answer 1", "answer 2"]
        assert gate.admitted == 0 and await asyncio.wait_for(_one_more(gate), 1) == "free"

    asyncio.run(scenario())


async def _one_more(gate: ReadGate) -> str:
    async def read() -> str:
        return "free"
    return await gate.run(read)


def test_a_read_that_waits_too_long_for_its_turn_is_refused() -> None:
    async def scenario() -> None:
        gate, reads = ReadGate(running=1, waiting=4, max_wait=0.01), Reads()
        first = asyncio.ensure_future(gate.run(reads.read))
        await settle()
        with pytest.raises(StoreBusy, match="no read finished within 0.01 s"):
            await gate.run(reads.read)  # the first read never finishes while this one waits
        assert len(reads.started) == 1 and gate.admitted == 1
        reads.started[0].set_result("done")
        assert await first == "done"

    asyncio.run(scenario())


def test_a_cancelled_caller_keeps_the_slot_until_its_read_finishes() -> None:
    async def scenario() -> None:
        gate, reads = ReadGate(running=1, waiting=1, max_wait=60), Reads()
        caller = asyncio.ensure_future(gate.run(reads.read))
        await settle()
        caller.cancel()  # the HTTP client went away; the engine is still running its read
        await settle()
        nxt = asyncio.ensure_future(gate.run(reads.read))
        await settle()
        assert len(reads.started) == 1  # the next read waits for the engine, not for the caller
        reads.started[0].set_result("late")
        await settle()
        assert len(reads.started) == 2
        reads.started[1].set_result("next")
        assert await nxt == "next"

    asyncio.run(scenario())

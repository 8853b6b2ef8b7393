"""The daemon's decisions push channel (processors/safety/stream.py) on a real aiohttp server in
this process, read by a real HTTP client: the snapshot first, committed decisions in order,
resuming from Last-Event-ID, the target filter. The slow client is a subscriber nobody reads
(a real socket's buffers would hide the slowness for megabytes), which is the fault itself."""
from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from processors.safety import stream as stream_module
from processors.safety.stream import DecisionStream, Subscriber

SNAPSHOT = {"breakers": {"ollama_model": {"state": "closed", "tier": 0, "fallback": None, "open_until": None},
                         "database": {"state": "closed", "tier": 0, "fallback": None, "open_until": None}},
            "throttles": {}, "canaries": {}}


def decision(action: str, target: str, n: int) -> dict[str, Any]:
    return {"schema": "agentdbg.decision/v1", "id": f"{action}-{n}", "action": action, "target": target,
            "state": {"state": "open", "tier": 1, "fallback": "tinyllama", "open_until": None}, "reason": str(n)}


@pytest.fixture
async def served() -> AsyncIterator[tuple[DecisionStream, str]]:
    broadcaster = DecisionStream(lambda: SNAPSHOT, heartbeat=0.05)
    app = web.Application()
    app.router.add_get("/debug/decisions/stream", broadcaster.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield broadcaster, str(server.make_url("/debug/decisions/stream"))
    broadcaster.close()
    await server.close()


async def read_events(response: aiohttp.ClientResponse, count: int) -> list[tuple[str, str, Any]]:
    """(id, event, data) of the next `count` events; comments (heartbeats) are skipped."""
    events: list[tuple[str, str, Any]] = []
    fields: dict[str, str] = {}
    while len(events) < count:
        line = (await asyncio.wait_for(response.content.readline(), 10)).decode().rstrip("\n")
        if line == "" and "data" in fields:
            events.append((fields.get("id", ""), fields.get("event", ""), json.loads(fields["data"])))
            fields = {}
        elif line and not line.startswith(":"):
            key, _, value = line.partition(": ")
            fields[key] = value
    return events


async def wait_for_subscribers(broadcaster: DecisionStream, n: int) -> None:
    while len(broadcaster.subscribers) < n:
        await asyncio.sleep(0)


async def test_snapshot_then_decisions_in_order_without_alerts(served) -> None:
    broadcaster, url = served
    async with aiohttp.ClientSession() as client, client.get(url) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        [(first_id, name, body)] = await read_events(response, 1)
        assert name == "snapshot" and body == SNAPSHOT and first_id == f"{broadcaster.run}-0"
        await wait_for_subscribers(broadcaster, 1)
        sent = [decision("breaker_open", "ollama_model", 1), decision("alert", "ollama_model", 2),
                decision("fallback", "ollama_model", 3)]
        broadcaster.publish(sent)
        got = await read_events(response, 2)
    assert [(i, n, d["id"]) for i, n, d in got] == [(f"{broadcaster.run}-1", "decision", "breaker_open-1"),
                                                     (f"{broadcaster.run}-2", "decision", "fallback-3")]
    assert got[1][2] == sent[2]


async def test_resuming_replays_what_was_missed_and_an_unknown_id_gets_a_snapshot(served) -> None:
    broadcaster, url = served
    broadcaster.publish([decision("breaker_open", "ollama_model", n) for n in range(1, 4)])
    async with aiohttp.ClientSession() as client:
        async with client.get(url, headers={"Last-Event-ID": f"{broadcaster.run}-1"}) as response:
            got = await read_events(response, 2)
        assert [d["id"] for _, _, d in got] == ["breaker_open-2", "breaker_open-3"]
        async with client.get(url, params={"last_event_id": "another-run-7"}) as response:
            [(_, name, _)] = await read_events(response, 1)
        assert name == "snapshot"


async def test_the_target_filter_keeps_the_clients_own_targets(served) -> None:
    broadcaster, url = served
    async with aiohttp.ClientSession() as client, client.get(url, params={"target": "database"}) as response:
        [(_, _, snapshot)] = await read_events(response, 1)
        assert list(snapshot["breakers"]) == ["database"]
        await wait_for_subscribers(broadcaster, 1)
        broadcaster.publish([decision("fallback", "ollama_model", 1), decision("fallback", "database", 2)])
        [(_, _, only)] = await read_events(response, 1)
    assert only["id"] == "fallback-2"


async def test_a_slow_client_is_dropped_and_counted_and_publishing_never_waits() -> None:
    broadcaster = DecisionStream(lambda: SNAPSHOT)
    slow, reading = Subscriber(frozenset()), Subscriber(frozenset({"database"}))
    broadcaster.subscribers |= {slow, reading}
    before = stream_module.dropped._value.get()
    broadcaster.publish([decision("fallback", "ollama_model", n) for n in range(stream_module.QUEUE_SIZE + 5)])
    assert slow not in broadcaster.subscribers and reading in broadcaster.subscribers
    assert stream_module.dropped._value.get() == before + 1
    queued = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
    assert queued[-1] is not None and queued[-1].name == "dropped"  # its handler ends the stream at once
    broadcaster.close()
    assert reading.queue.get_nowait() is None

"""The safety state pushed to agents: `GET /debug/decisions/stream`, server-sent events.

What a client gets, in order:
- `retry: 1000` (an EventSource reconnects after one second);
- a `snapshot` event: `{"breakers": {...}, "throttles": {...}, "canaries": {...}}`, the same views
  as `GET /debug/breakers` / `throttles` / `canaries`, unless it resumes (below);
- one `decision` event per state change the processor commits: every `agentdbg.decision/v1`
  document except alerts (`alert`, `resolve_alert` change no breaker, throttle or canary), in
  commit order, each only after every exporter took it;
- a `: heartbeat` comment every `heartbeat` seconds of silence, so a client (and any proxy)
  sees a dead connection within a few seconds.

Every event has an id `<run>-<seq>`: `run` names this processor instance, `seq` counts its
events. A client that reconnects with `Last-Event-ID` (header, or `?last_event_id=`) of this run
gets the events it missed from the history (the last `HISTORY` events) and no snapshot; an id of
another run (the daemon restarted or reloaded) or older than the history gets a fresh snapshot.
`?target=<name>` (repeatable) keeps only the decisions and snapshot entries of those targets.

What it promises when a client is slow: each client has a bounded queue (`QUEUE_SIZE` events);
publishing never waits. A client whose queue is full is dropped (its connection is closed after
an `event: dropped`), counted in `agentdbg_safety_stream_dropped_clients_total`, and may
reconnect with its last id. The processor's shutdown (or a reload replacing it) ends every
stream at once, so it never holds the debug API's shutdown.
"""
from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson
from aiohttp import web
from prometheus_client import Counter, Gauge

from pipeline.telemetry.metrics import REGISTRY

ROUTE = "decisions/stream"
HISTORY = 1000
QUEUE_SIZE = 256
HEARTBEAT = 5.0
UNSTREAMED = frozenset({"alert", "resolve_alert"})

clients = Gauge("agentdbg_safety_stream_clients", "Clients connected to GET /debug/decisions/stream.",
                registry=REGISTRY)
dropped = Counter("agentdbg_safety_stream_dropped_clients",
                  "Stream clients dropped because their queue was full (too slow to read).", registry=REGISTRY)


@dataclass(frozen=True)
class Event:
    seq: int
    name: str  # snapshot | decision | dropped
    data: dict[str, Any]
    target: str | None = None


@dataclass(eq=False)
class Subscriber:
    targets: frozenset[str]
    queue: asyncio.Queue[Event | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))

    def wants(self, event: Event) -> bool:
        return not self.targets or event.target in self.targets


class DecisionStream:
    """In-process broadcaster of committed decisions to the stream's clients."""

    def __init__(self, snapshot: Callable[[], dict[str, dict[str, Any]]], heartbeat: float = HEARTBEAT,
                 history: int = HISTORY) -> None:
        self.run = uuid.uuid4().hex[:12]
        self.snapshot = snapshot
        self.heartbeat = heartbeat
        self.seq = 0
        self.history: deque[Event] = deque(maxlen=history)
        self.subscribers: set[Subscriber] = set()

    def event_id(self, seq: int) -> str:
        return f"{self.run}-{seq}"

    def publish(self, decisions: list[dict[str, Any]]) -> None:
        """Queue `decisions` (already committed) for every client; never waits."""
        for doc in decisions:
            if doc.get("action") in UNSTREAMED:
                continue
            self.seq += 1
            target = doc.get("target")
            event = Event(self.seq, "decision", doc, target if isinstance(target, str) else None)
            self.history.append(event)
            for subscriber in list(self.subscribers):
                if subscriber.wants(event):
                    self._offer(subscriber, event)

    def _offer(self, subscriber: Subscriber, event: Event) -> None:
        try:
            subscriber.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.subscribers.discard(subscriber)
            dropped.inc()
            with contextlib.suppress(asyncio.QueueEmpty):
                subscriber.queue.get_nowait()  # room for the end marker: the handler stops at once
            subscriber.queue.put_nowait(Event(self.seq, "dropped", {"reason": "too slow: queue full"}))

    def close(self) -> None:
        """End every stream (shutdown, reload)."""
        for subscriber in list(self.subscribers):
            with contextlib.suppress(asyncio.QueueEmpty):
                subscriber.queue.get_nowait()
            subscriber.queue.put_nowait(None)
        self.subscribers.clear()

    def _missed(self, last_event_id: str, subscriber: Subscriber) -> list[Event] | None:
        """The events after `last_event_id`, or None when they are not all known (a snapshot then)."""
        run, _, seq_text = last_event_id.strip().rpartition("-")
        if run != self.run or not seq_text.isdigit():
            return None
        seq = int(seq_text)
        oldest = self.history[0].seq if self.history else self.seq + 1
        if seq > self.seq or seq + 1 < oldest:
            return None
        return [e for e in self.history if e.seq > seq and subscriber.wants(e)]

    def _first_events(self, request: web.Request, subscriber: Subscriber) -> list[Event]:
        """Subscribe and take the first events in one step (no await): nothing published in between is lost."""
        resume = request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or ""
        missed = self._missed(resume, subscriber) if resume else None
        self.subscribers.add(subscriber)
        if missed is not None:
            return missed
        return [Event(self.seq, "snapshot", _filtered(self.snapshot(), subscriber.targets))]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            raise web.HTTPMethodNotAllowed(request.method, ["GET"], text=f"{request.path} is read-only")
        subscriber = Subscriber(frozenset(request.query.getall("target", [])))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        clients.inc()
        try:
            await response.write(b"retry: 1000\n\n")
            for event in self._first_events(request, subscriber):
                await response.write(self._frame(event))
            await self._pump(response, subscriber)
        except ConnectionResetError:
            pass  # the client went away: nothing to answer
        finally:
            self.subscribers.discard(subscriber)
            clients.dec()
        return response

    async def _pump(self, response: web.StreamResponse, subscriber: Subscriber) -> None:
        while True:
            try:
                event = await asyncio.wait_for(subscriber.queue.get(), self.heartbeat)
            except asyncio.TimeoutError:
                await response.write(b": heartbeat\n\n")
                continue
            if event is None:
                return
            await response.write(self._frame(event))
            if event.name == "dropped":
                return

    def _frame(self, event: Event) -> bytes:
        return b"id: %s\nevent: %s\ndata: %s\n\n" % (self.event_id(event.seq).encode(), event.name.encode(),
                                                      orjson.dumps(event.data))


def _filtered(snapshot: dict[str, dict[str, Any]], targets: frozenset[str]) -> dict[str, dict[str, Any]]:
    if not targets:
        return snapshot
    return {kind: {k: v for k, v in views.items() if k in targets} for kind, views in snapshot.items()}

"""The daemon's safety decisions, followed over its push channel (`GET /debug/decisions/stream`,
server-sent events) on a background thread.

What it promises to the call path: reading a target's state (`breaker(name)`, `throttle(key)`)
is a dictionary lookup, never I/O, so no call waits on the daemon. The first event of a
connection is a snapshot of every breaker and throttle; then each committed decision arrives as
it is taken, and the state it carries replaces the target's. Decisions marked `dry_run` are
ignored (the daemon only computed them).

While the daemon is unreachable (refused, reset, or no byte for `read_timeout`: it sends a
heartbeat every 5 s) the feed holds no daemon state at all: the breakers and throttles then work
on their local state alone, and the feed reconnects with a growing delay (`backoff`, capped),
resuming from the last event id it saw (the daemon replays what it missed, or sends a new
snapshot).

The SSE reading is a few lines here rather than a library: the issue bounds the agent library's
dependencies to OpenTelemetry and one HTTP client.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import httpx2

LOG = logging.getLogger("sutazai_agent.feed")
STREAM_PATH = "/debug/decisions/stream"
# kind (breaker | throttle), target, its state (None: lifted), the decision document
Listener = Callable[[str, str, "dict[str, Any] | None", dict[str, Any]], None]


@dataclass(frozen=True)
class SseEvent:
    id: str
    event: str
    data: str


def sse_events(lines: Iterable[str]) -> Iterator[SseEvent]:
    """Server-sent events from the stream's lines: `field: value` lines, a blank line ends an
    event, `:` starts a comment (the heartbeat); an event without data is not dispatched."""
    event_id, name, data = "", "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield SseEvent(event_id, name, "\n".join(data))
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
        elif field == "id":
            event_id = value


class DecisionFeed:
    def __init__(self, url: str, token: str | None = None, connect_timeout: float = 2.0,
                 read_timeout: float = 15.0, backoff: tuple[float, float] = (0.2, 5.0)) -> None:
        self.url = url.rstrip("/") + ("" if url.rstrip("/").endswith(STREAM_PATH) else STREAM_PATH)
        self.token = token
        self.timeout = httpx2.Timeout(read_timeout, connect=connect_timeout)
        self.backoff = backoff
        self.breakers: dict[str, dict[str, Any]] = {}
        self.throttles: dict[str, dict[str, Any]] = {}
        self.connected = False
        self.last_event_id = ""
        self.decisions_seen = 0
        self._listeners: list[Listener] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: httpx2.Response | None = None
        # What it held when the connection was lost: restored if the daemon resumes the stream
        # from the last event id (it then replays what was missed instead of a snapshot).
        self._held: tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]] | None = None

    # -- the call path's side ------------------------------------------------------------------
    def breaker(self, name: str) -> dict[str, Any] | None:
        """The daemon's state of breaker `name` ({state, tier, fallback, open_until}), None when unknown."""
        return self.breakers.get(name)

    def throttle(self, target: str) -> dict[str, Any] | None:
        """The daemon's throttle of `target` ({rate_per_minute, burst_per_second, fallback}), None when none."""
        return self.throttles.get(target)

    def on_decision(self, listener: Listener) -> None:
        """Call `listener` (on the feed's thread) for every breaker or throttle change applied."""
        self._listeners.append(listener)

    # -- applying what the daemon sends (no I/O: unit-testable) --------------------------------------
    def apply_snapshot(self, snapshot: dict[str, Any]) -> None:
        self.breakers = dict(snapshot.get("breakers") or {})
        self.throttles = {k: v for k, v in (snapshot.get("throttles") or {}).items()
                          if v.get("rate_per_minute") is not None}

    def apply_decision(self, doc: dict[str, Any]) -> None:
        target, state = doc.get("target"), doc.get("state")
        if doc.get("dry_run") or not isinstance(target, str) or not isinstance(state, dict):
            return
        self.decisions_seen += 1
        if "rate_per_minute" in state:  # throttle / unthrottle, and the cost `fallback` (prefer)
            lifted = state.get("rate_per_minute") is None
            if lifted:
                self.throttles.pop(target, None)
            else:
                self.throttles[target] = state
            self._tell("throttle", target, None if lifted else state, doc)
        elif "tier" in state:
            self.breakers[target] = {**state, "reason": f"daemon: {doc.get('reason', doc.get('action'))}"}
            self._tell("breaker", target, state, doc)

    def _tell(self, kind: str, target: str, state: dict[str, Any] | None, doc: dict[str, Any]) -> None:
        for listener in self._listeners:
            try:
                listener(kind, target, state, doc)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the feed
                LOG.exception("a decision listener failed")

    def forget(self) -> None:
        """The daemon is out of reach: hold none of its state (the local breakers decide alone)."""
        if self.connected:
            self._held = (self.breakers, self.throttles)
        self.connected = False
        self.breakers, self.throttles = {}, {}

    # -- the background thread -------------------------------------------------------------------
    def start(self) -> "DecisionFeed":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sutazai-decision-feed", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            response.close()  # unblocks the reader
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self) -> None:
        delay = self.backoff[0]
        with httpx2.Client(timeout=self.timeout) as client:
            while not self._stop.is_set():
                try:
                    self._follow(client)
                    delay = self.backoff[0]  # it was connected: the next attempt starts fast again
                except Exception as exc:  # noqa: BLE001 - any failure: local state alone, and retry
                    if self.connected or self.breakers or self.throttles:
                        LOG.warning("lost the daemon's decisions stream (%s); local state only", exc)
                    delay = min(delay * 2, self.backoff[1])
                self.forget()
                self._stop.wait(delay)

    def _follow(self, client: httpx2.Client) -> None:
        headers = {"Accept": "text/event-stream"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        with client.stream("GET", self.url, headers=headers) as response:
            response.raise_for_status()
            self._response = response
            held, self._held = self._held, None
            if held is not None:  # resumed: the daemon replays what was missed, or sends a snapshot
                self.breakers, self.throttles = held
            try:
                self.connected = True
                for event in sse_events(response.iter_lines()):
                    self._handle(event)
            finally:
                self._response = None

    def _handle(self, event: SseEvent) -> None:
        body = json.loads(event.data)
        if event.event == "snapshot":
            self.apply_snapshot(body)
        elif event.event == "decision":
            self.apply_decision(body)
        if event.id:
            self.last_event_id = event.id

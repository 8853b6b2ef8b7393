"""`safety` processor: trigger events in, safety decisions (`agentdbg.decision/v1`) out.

Per-target state machines: circuit breakers with a fallback chain, canary analysis,
cost throttling, and an alert per firing event. Put it on an events pipeline fed by the
`kafka` receiver (config/safety.yaml) or by the `triggers` connector (config/default.yaml).

What it promises: decisions for a batch are computed on a copy of the state, handed to
the next stage, and only kept (and written to `state_file`) once every exporter took
them; when the next stage refuses retryably, the state is unchanged and the refusal goes
back to the receiver, which redelivers the same events. An exporter that refuses a decision
permanently has counted it as failed; the state moves on. Decision ids are deterministic
from (cause event id, action, target) and remembered, so a redelivered event or a restart
never repeats an action. Time-driven transitions (half-open after the timeout, tier
step-back) run every `tick_interval` the same way.

A bad document never stops it: one that is not a valid `agentdbg.trigger/v1` event
(reason `invalid_document`, or `not_a_trigger` for another valid document), or one the
engine fails on (`engine_error`), is counted in `agentdbg_safety_rejected_events_total`,
logged, and set aside; the other events of the batch are decided as if it were not there.
A state file that cannot be written is counted (`agentdbg_safety_state_save_failures_total`)
and logged; deciding goes on.

After a restart (the state file written by an earlier run) open breakers hold only
unconfirmed episodes: they half-open after their timeout and close one timeout later
unless a fresh failure arrives (processors/safety/breakers.py; `restored_episodes: keep`
trusts them instead). Operators can reset a
breaker and lift a throttle over the debug API (processors/safety/admin.py).

With `mode: dry_run` decisions are computed and exported but marked `"dry_run": true`.
Current state: `/debug/breakers`, `/debug/throttles`, `/debug/canaries`,
`/debug/decisions?since=<RFC 3339>` and `agentdbg_safety_*` gauges; agents follow it on
`/debug/decisions/stream` (server-sent events of every committed change, processors/safety/stream.py).
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from pipeline.component import Consumer, Factory, Kind, Processor, Settings, Signal
from pipeline.documents import InvalidDocument, validate
from pipeline.documents.trigger import Trigger
from pipeline.errors import PermanentError, Refused
from pipeline.host import Host
from pipeline.pdata.events import Events
from processors.safety import admin, state_file, telemetry
from processors.safety.config import SafetyConfig
from processors.safety.engine import SafetyEngine, SafetyState
from processors.safety.stream import ROUTE as STREAM_ROUTE
from processors.safety.stream import DecisionStream


class SafetyProcessor(Processor[Events]):
    def __init__(self, settings: Settings, config: SafetyConfig, next_consumer: Consumer) -> None:
        super().__init__(settings, next_consumer)
        self.config = config
        saved = state_file.load(config.state_file)
        state = None
        if saved:
            earlier_run = not state_file.written_by_this_run(saved)
            state = SafetyState.from_json(saved, restored=earlier_run and config.restored_episodes == "probe")
        self.engine = SafetyEngine(config, state)
        self.recent: deque[dict[str, Any]] = deque(maxlen=config.decisions_kept)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._tick_failure_logged = -60.0
        self.stream = DecisionStream(self._snapshot)

    async def start(self, host: Host) -> None:
        telemetry.publish(self.engine.state)
        for name, handler in (("breakers", self._breakers), ("throttles", self._throttles),
                              ("canaries", self._canaries), ("decisions", self._decisions)):
            host.add_debug_route(name, handler)
        host.add_debug_route(STREAM_ROUTE, self.stream.handle)
        self._task = asyncio.create_task(self._ticker(), name=f"{self.id}-tick")

    async def shutdown(self, deadline: float | None = None) -> None:
        self.stream.close()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def consume(self, batch: Events) -> None:
        events = [doc for doc in batch.documents if self._is_trigger(doc)]
        async with self._lock:
            now = time.time()
            candidate, decisions = self._decide(events, now)
            await self._commit(candidate, decisions)

    # -- bad documents -----------------------------------------------------------------------------
    def _is_trigger(self, document: Any) -> bool:
        try:
            if isinstance(validate(document), Trigger):
                return True
            self._set_aside(document, "not_a_trigger", f"a {document.get('schema')} document is not a trigger event")
        except InvalidDocument as exc:
            self._set_aside(document, "invalid_document", str(exc))
        return False

    def _decide(self, events: list[dict[str, Any]], now: float) -> tuple[SafetyEngine, list[dict[str, Any]]]:
        """Decisions for `events` on a copy of the state. An event the engine fails on is set
        aside and the batch decided again without it (on a fresh copy: the failure may have
        left the first one half-changed)."""
        skipped: set[int] = set()
        while True:
            candidate, decisions, index = self.engine.copy(), [], 0
            try:
                for index, event in enumerate(events):
                    if index not in skipped:
                        decisions += candidate.handle(event, now)
                return candidate, decisions
            except Exception as exc:  # a bug must not stop every later event from being decided
                skipped.add(index)
                self._set_aside(events[index], "engine_error", repr(exc), exc_info=True)

    def _set_aside(self, document: Any, reason: str, problem: str, exc_info: bool = False) -> None:
        telemetry.rejected_events.labels(reason).inc()
        ident = document.get("id") if isinstance(document, dict) else None
        self.log.error("set aside a document without deciding on it", exc_info=exc_info, extra={"kv": {
            "reason": reason, "id": str(ident)[:100], "error": problem[:1000]}})

    # -- deciding ----------------------------------------------------------------------------------
    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_interval)
            try:
                await self._tick(time.time())
            except Refused:
                pass  # state unchanged: the same transition is tried at the next tick
            except Exception:  # noqa: BLE001 - the ticker must outlive any one failure
                telemetry.tick_failures.inc()
                if time.monotonic() - self._tick_failure_logged >= 60.0:  # a lasting fault: once a minute
                    self._tick_failure_logged = time.monotonic()
                    self.log.exception("safety tick failed; it is tried again at every tick")

    async def _tick(self, now: float) -> None:
        if not self.engine.tick_due(now):
            return
        async with self._lock:
            candidate = self.engine.copy()
            await self._commit(candidate, candidate.tick(now))

    async def _commit(self, candidate: SafetyEngine, decisions: list[dict[str, Any]]) -> None:
        if decisions:
            if self.config.mode == "dry_run":
                for doc in decisions:
                    doc["dry_run"] = True
            try:
                await self.next.consume(Events(decisions))
            except PermanentError as exc:
                self.log.warning("an exporter refused decisions permanently (counted there); the state moves on",
                                 extra={"kv": {"error": str(exc), "decisions": len(decisions)}})
        candidate.commit()
        self.engine = candidate
        try:
            state_file.save(self.config.state_file, candidate.state.to_json())
        except OSError as exc:  # the decisions were taken: keep deciding, and say what a restart would lose
            telemetry.state_save_failures.inc()
            self.log.error("could not write the safety state file; a restart now would forget the latest "
                           "transitions", extra={"kv": {"path": self.config.state_file, "error": str(exc)}})
        for doc in decisions:
            telemetry.decisions.labels(doc["action"]).inc()
            self.recent.append(doc)
            self.log.info("decision", extra={"kv": {"action": doc["action"], "target": doc["target"],
                                                     "reason": doc["reason"]}})
        telemetry.publish(candidate.state)
        self.stream.publish(decisions)  # committed: agents may act on them now

    # -- debug API -------------------------------------------------------------------------------
    async def _breakers(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            return await self._admin(request)
        return web.json_response(self._snapshot()["breakers"])

    def _snapshot(self) -> dict[str, dict[str, Any]]:
        """The state views of the debug routes, for a stream client's first event."""
        chain, state = self.config.fallback_chain, self.engine.state
        return {"breakers": {name: b.view(self.config.breakers[name], chain) for name, b in state.breakers.items()},
                "throttles": dict(state.throttles), "canaries": {k: c.view() for k, c in state.canaries.items()}}

    async def _throttles(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            return await self._admin(request)
        return web.json_response(self.engine.state.throttles)

    async def _canaries(self, request: web.Request) -> web.Response:
        _read_only(request)
        return web.json_response(self._snapshot()["canaries"])

    async def _decisions(self, request: web.Request) -> web.Response:
        _read_only(request)
        since = request.query.get("since")
        docs = list(self.recent)
        if since:
            try:
                limit = datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                raise web.HTTPBadRequest(text=f"since={since!r} is not an RFC 3339 time") from None
            if limit.tzinfo is None:
                limit = limit.replace(tzinfo=timezone.utc)  # a time with no zone is read as UTC
            docs = [d for d in docs if datetime.fromisoformat(d["decided_at"].replace("Z", "+00:00")) >= limit]
        return web.json_response(docs)

    async def _admin(self, request: web.Request) -> web.Response:
        action = await admin.parse(request)
        async with self._lock:
            candidate = self.engine.copy()
            act = candidate.reset_breaker if action.route == "breakers" else candidate.lift_throttle
            try:
                decisions = act(action.target, action.requested_by, action.reason, action.request_id, time.time())
            except KeyError:
                known = self.engine.state.breakers if action.route == "breakers" else self.engine.state.throttles
                raise web.HTTPNotFound(text=f"no {action.route[:-1]} {action.target!r}; known: "
                                            f"{', '.join(sorted(known)) or 'none'}") from None
            if not decisions:  # the same Idempotency-Key again: done before, change nothing now
                return web.json_response({"decisions": [], "already_done": action.request_id})
            try:
                await self._commit(candidate, decisions)
            except Refused as exc:
                raise web.HTTPServiceUnavailable(text=f"not done, try again: {exc}",
                                                 headers={"Retry-After": str(max(1, round(exc.retry_after)))}) from exc
        return web.json_response({"decisions": decisions})


def _read_only(request: web.Request) -> None:
    if request.method != "GET":
        raise web.HTTPMethodNotAllowed(request.method, ["GET"], text=f"{request.path} is read-only")


factory = Factory("safety", Kind.PROCESSOR, SafetyConfig, SafetyProcessor, signals=frozenset({Signal.EVENTS}),
                  description="circuit breakers, canary rollback, cost throttling and alerts from trigger events")

"""`safety` processor: trigger events in, safety decisions (`agentdbg.decision/v1`) out.

Per-target state machines: circuit breakers with a fallback chain, canary analysis,
cost throttling, and an alert per firing event. Put it on an events pipeline fed by the
`kafka` receiver (config/safety.yaml) or by the `triggers` connector (config/default.yaml).

What it promises: decisions for a batch are computed on a copy of the state, handed to
the next stage, and only kept (and written to `state_file`) once every exporter took
them; when the next stage refuses, the state is unchanged and the refusal goes back to the
receiver, which redelivers the same events. Decision ids are deterministic from (cause
event id, action) and remembered, so a redelivered event or a restart never repeats an
action. Time-driven transitions (half-open after the timeout, tier step-back) run every
`tick_interval` the same way. With `mode: dry_run` decisions are computed and exported but
marked `"dry_run": true`. Current state: `/debug/breakers`, `/debug/throttles`,
`/debug/canaries`, `/debug/decisions?since=<RFC 3339>` and `agentdbg_safety_*` gauges.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from datetime import datetime
from typing import Any

from aiohttp import web

from pipeline.component import Consumer, Factory, Kind, Processor, Settings, Signal
from pipeline.errors import Refused
from pipeline.events import Events
from processors.safety import state_file, telemetry
from processors.safety.config import SafetyConfig
from processors.safety.engine import SafetyEngine, SafetyState


class SafetyProcessor(Processor):
    def __init__(self, settings: Settings, config: SafetyConfig, next_consumer: Consumer) -> None:
        super().__init__(settings, next_consumer)
        self.config = config
        saved = state_file.load(config.state_file)
        self.engine = SafetyEngine(config, SafetyState.from_json(saved) if saved else None)
        self.recent: deque[dict[str, Any]] = deque(maxlen=config.decisions_kept)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self, host: Any) -> None:
        telemetry.publish(self.engine.state)
        for name, handler in (("breakers", self._breakers), ("throttles", self._throttles),
                              ("canaries", self._canaries), ("decisions", self._decisions)):
            host.add_debug_route(name, handler)
        self._task = asyncio.create_task(self._ticker(), name=f"{self.id}-tick")

    async def shutdown(self, deadline: float | None = None) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def consume(self, batch: Events) -> None:
        async with self._lock:
            now = time.time()
            candidate = self.engine.copy()
            decisions = [d for event in batch.documents for d in candidate.handle(event, now)]
            await self._commit(candidate, decisions)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_interval)
            if not self.engine.tick_due(time.time()):
                continue
            async with self._lock:
                candidate = self.engine.copy()
                decisions = candidate.tick(time.time())
                try:
                    await self._commit(candidate, decisions)
                except Refused:
                    pass  # state unchanged: the same transition is tried at the next tick

    async def _commit(self, candidate: SafetyEngine, decisions: list[dict[str, Any]]) -> None:
        if decisions:
            if self.config.mode == "dry_run":
                for doc in decisions:
                    doc["dry_run"] = True
            await self.next.consume(Events(decisions))
        candidate.commit()
        self.engine = candidate
        state_file.save(self.config.state_file, candidate.state.to_json())
        for doc in decisions:
            telemetry.decisions.labels(doc["action"]).inc()
            self.recent.append(doc)
            self.log.info("decision", extra={"kv": {"action": doc["action"], "target": doc["target"],
                                                     "reason": doc["reason"]}})
        telemetry.publish(candidate.state)

    # -- debug API -------------------------------------------------------------------------------
    async def _breakers(self, _: web.Request) -> web.Response:
        chain = self.config.fallback_chain
        return web.json_response({name: state.view(self.config.breakers[name], chain)
                                  for name, state in self.engine.state.breakers.items()})

    async def _throttles(self, _: web.Request) -> web.Response:
        return web.json_response(self.engine.state.throttles)

    async def _canaries(self, _: web.Request) -> web.Response:
        return web.json_response({key: c.view() for key, c in self.engine.state.canaries.items()})

    async def _decisions(self, request: web.Request) -> web.Response:
        since = request.query.get("since")
        docs = list(self.recent)
        if since:
            try:
                limit = datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                raise web.HTTPBadRequest(text=f"since={since!r} is not an RFC 3339 time")
            docs = [d for d in docs if datetime.fromisoformat(d["decided_at"].replace("Z", "+00:00")) >= limit]
        return web.json_response(docs)


factory = Factory("safety", Kind.PROCESSOR, SafetyConfig, SafetyProcessor, signals=frozenset({Signal.EVENTS}),
                  description="circuit breakers, canary rollback, cost throttling and alerts from trigger events")

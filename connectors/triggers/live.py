"""What is running now: the `triggers` connector's in-flight span table and its live judges.

The detectors' windows run on event time (connectors/triggers/eventtime.py), which waits
`allowed_lateness` for late batches. A blocked agent cannot wait for that: it is seen from
spans that have not ended. So this part runs beside event time, on the connector's clock:

- every traces batch (on arrival, before event-time ordering) and every logs batch feeds the
  in-flight table (connectors/triggers/inflight.py);
- at every evaluation tick (`evaluation_interval`, 250 ms) the table forgets what it has not
  heard of for `inflight.forget_after`, and the live judges (deadlock's `evaluate_live`)
  report on the open spans at the clock's UNIX time; their episodes are kept apart from the
  event-time ones (an episode key of its own, `|live`), and their events are the same
  `agentdbg.trigger/v1` documents.

`GET /debug/inflight` on the debug API (viewer) lists the open spans, the one longest without
progress first (`?limit=`, 100 by default): where each agent is stuck now.

What it promises when things go wrong: a judge that raises is logged and counted in
`agentdbg_trigger_detector_errors_total{kind}`, and the other judges and the event-time
detectors go on; a logs batch it cannot read is counted and left to the other exporters of
the logs pipeline (the connector never refuses logs). The table and the live episodes
survive a SIGHUP reload and start empty after a restart (they describe the agents running
now, which report again within one heartbeat).
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

from aiohttp import web

from connectors.triggers.config import TriggersConfig
from connectors.triggers.detectors.base import Detector
from connectors.triggers.detectors.deadlock import DeadlockDetector
from connectors.triggers.episodes import Episode, EpisodeTracker
from connectors.triggers.inflight import InflightSpans
from connectors.triggers.telemetry import detector_errors, inflight_records, inflight_spans, state_evictions
from pipeline.clock import SYSTEM_CLOCK, Clock
from pipeline.pdata.events import rfc3339
from pipeline.pdata.logs import Logs
from pipeline.pdata.traces import Traces


class LiveView:
    def __init__(self, connector: str, config: TriggersConfig, detectors: Sequence[Detector[Any]],
                 log: logging.Logger, clock: Clock = SYSTEM_CLOCK) -> None:
        self.connector = connector
        self.log = log
        self.clock = clock
        self.enabled = config.inflight.enabled
        self.inflight = InflightSpans(config.inflight)
        self.judges = [d for d in detectors if isinstance(d, DeadlockDetector)] if self.enabled else []
        for judge in self.judges:
            judge.inflight = self.inflight
        self.tracker = EpisodeTracker(connector, config.resolve_after, config.resolve_ratio)
        self.attribute_keys: tuple[str, ...] = InflightSpans.attribute_keys if self.enabled else ()

    @property
    def active(self) -> dict[str, Episode]:
        return self.tracker.active

    def take_state_from(self, previous: LiveView) -> None:
        self.inflight.take_state_from(previous.inflight)
        self.tracker.active = previous.tracker.active

    # -- hot path --------------------------------------------------------------------------------
    def observe(self, batch: Traces | Logs) -> None:
        """Fold one batch into the table (never raises: a failure is logged and counted)."""
        if not self.enabled:
            return
        try:
            if isinstance(batch, Logs):
                self.inflight.observe_logs(batch)
            else:
                self.inflight.observe(batch)
        except Exception:
            detector_errors.labels(self.connector, self.inflight.kind).inc()
            self.log.exception("the in-flight span table failed on a batch; the batch still went on")

    # -- on the clock ----------------------------------------------------------------------------
    def evaluate(self, now: float) -> list[dict[str, Any]]:
        """Forget what went quiet, judge the open spans at UNIX time `now`; the documents to emit."""
        if not self.enabled:
            return []
        self.inflight.expire(now)
        emitted: list[dict[str, Any]] = []
        for judge in self.judges:
            try:
                observations = judge.evaluate_live(now)
            except Exception:
                detector_errors.labels(self.connector, judge.kind).inc()
                self.log.exception("live judgement failed", extra={"kv": {"detector": judge.kind}})
                continue
            emitted.extend(self.tracker.update(judge.kind, observations, now))
        self._count()
        return emitted

    # -- the debug API -----------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.Response:
        """GET /debug/inflight: the open spans, longest without progress first."""
        try:
            limit = max(0, int(request.query.get("limit", "100")))
        except ValueError:
            return web.json_response({"error": "limit must be a whole number"}, status=400)
        now = self.clock.time()
        spans = sorted(self.inflight.spans.values(), key=lambda s: s.progress)
        return web.json_response({"count": len(spans), "spans": [{
            "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(), "parent_span_id": s.parent.hex(),
            "name": s.name, "service": s.service, "role": s.role, "agent": s.agent, "start": rfc3339(s.start),
            "open_seconds": round(now - s.start, 3), "since_progress_seconds": round(now - s.progress, 3),
            "last_heard_seconds_ago": round(now - s.seen, 3), "stopped": s.end is not None,
        } for s in spans[:limit]]})

    def _count(self) -> None:
        table = self.inflight
        for reason, count in table.drops.items():
            state_evictions.labels(self.connector, table.kind, reason).inc(count)
        for event, count in table.records.items():
            inflight_records.labels(self.connector, event).inc(count)
        table.drops.clear()
        table.records.clear()
        inflight_spans.labels(self.connector).set(len(table.spans))

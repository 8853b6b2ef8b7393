"""`alertmanager`: turn `alert` / `resolve_alert` decisions into Prometheus Alertmanager alerts (v2 API).

Alerts are posted to every endpoint (`POST /api/v2/alerts`), as Prometheus does. A firing
alert carries `endsAt` = now + 4 × `resend_interval` (a lease) and is re-posted every
`resend_interval` while it fires, so Alertmanager keeps it active and lets it expire if
this daemon dies. A resolution is posted with `endsAt` = now and re-posted for
`resolve_resend_for`, so an Alertmanager that missed it still learns of it. Alerts are
identified by their label set, so a repeated post is harmless; episodes that share a label
set are one alert, resolved only once none of them fires. What it promises: a post
that fails on any endpoint (connection error, 429, 5xx) is retried by the exporter helper;
other answers are permanent, counted and logged. Re-posts are best effort and logged.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
from pydantic import Field

from exporters.helper import ExporterHelperConfig, QueuedExporter
from exporters.helper.http import raise_for_status
from pipeline.component import Factory, Kind, Settings, Signal
from pipeline.config.units import Duration
from pipeline.errors import RetryableError
from pipeline.netaddr import HttpUrl
from pipeline.pdata.events import Events, rfc3339


def identity(alert: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """What Alertmanager identifies an alert by: its label set."""
    return tuple(sorted(alert["labels"].items()))


class AlertmanagerConfig(ExporterHelperConfig):
    endpoints: list[HttpUrl] = Field(default_factory=lambda: ["http://localhost:9093"], min_length=1)
    resend_interval: Duration = 60.0
    resolve_resend_for: Duration = 300.0
    generator_url: str = ""
    headers: dict[str, str] = Field(default_factory=dict)



class AlertmanagerExporter(QueuedExporter[Events]):
    def __init__(self, settings: Settings, config: AlertmanagerConfig) -> None:
        super().__init__(settings, config)
        self.am = config
        self.firing: dict[str, dict[str, Any]] = {}    # episode → alert
        self.resolved: dict[str, tuple[dict[str, Any], float]] = {}  # episode → (alert, resolved at)
        self._session: aiohttp.ClientSession | None = None
        self._resender: asyncio.Task[None] | None = None

    async def start_client(self) -> None:
        self._session = aiohttp.ClientSession()
        self._resender = asyncio.create_task(self._resend_loop(), name=f"{self.id}-resend")

    async def stop_client(self) -> None:
        if self._resender:
            self._resender.cancel()
            await asyncio.gather(self._resender, return_exceptions=True)
        if self._session:
            await self._session.close()

    def item_count(self, batch: Events) -> int:
        return sum(1 for doc in batch.documents if doc.get("action") in ("alert", "resolve_alert"))

    def _alert(self, doc: dict[str, Any], now: float) -> dict[str, Any]:
        state = doc.get("state") or {}
        starts = state.get("starts_at") or doc.get("decided_at")
        alert = {"labels": state.get("labels") or doc.get("target") or {},
                 "annotations": {**(state.get("annotations") or {}), "reason": doc.get("reason", "")},
                 "startsAt": starts,
                 "endsAt": rfc3339(now if doc["action"] == "resolve_alert" else now + 4 * self.am.resend_interval)}
        if self.am.generator_url:
            alert["generatorURL"] = self.am.generator_url
        return alert

    async def send(self, batch: Events) -> None:
        now = time.time()
        firing: dict[str, dict[str, Any]] = {}
        resolved: dict[str, dict[str, Any]] = {}
        for doc in batch.documents:
            if doc.get("action") not in ("alert", "resolve_alert"):
                continue
            alert = self._alert(doc, now)
            episode = (doc.get("state") or {}).get("episode") or doc["id"]
            if doc["action"] == "alert":
                firing[episode] = alert
                resolved.pop(episode, None)
            else:
                resolved[episode] = alert
                firing.pop(episode, None)
        if not firing and not resolved:
            return
        still_firing = {**self.firing, **firing}
        for episode in resolved:
            still_firing.pop(episode, None)
        lit = {identity(alert) for alert in still_firing.values()}
        # Alertmanager knows an alert by its label set: several episodes can share one (a
        # subject's daily budget and its burn rate), and posting the resolution of one would
        # resolve the alert the others still fire under.
        resolutions = {episode: alert for episode, alert in resolved.items() if identity(alert) not in lit}
        alerts = [*firing.values(), *resolutions.values()]
        if alerts:
            await self._post(alerts)
        self.firing = still_firing
        for episode, (alert, _) in list(self.resolved.items()):
            if identity(alert) in lit:
                del self.resolved[episode]  # firing again: its old resolution must not be re-posted
        for episode, alert in resolutions.items():
            self.resolved[episode] = (alert, now)

    async def _post(self, alerts: list[dict[str, Any]]) -> None:
        assert self._session is not None
        body = orjson.dumps(alerts)
        headers = {**self.am.headers, "Content-Type": "application/json"}
        for endpoint in self.am.endpoints:
            url = endpoint.rstrip("/") + "/api/v2/alerts"
            try:
                async with self._session.post(url, data=body, headers=headers) as response:
                    text = (await response.read())[:300].decode("utf-8", "replace")
                    raise_for_status(response.status, text, response.headers.get("Retry-After"))
            except aiohttp.ClientError as exc:
                raise RetryableError(f"cannot reach {url}: {exc}", error_type="connection") from exc

    async def _resend_loop(self) -> None:
        while True:
            await asyncio.sleep(self.am.resend_interval)
            now = time.time()
            for episode, (_, at) in list(self.resolved.items()):
                if now - at > self.am.resolve_resend_for:
                    del self.resolved[episode]
            lease = rfc3339(now + 4 * self.am.resend_interval)
            alerts = [{**alert, "endsAt": lease} for alert in self.firing.values()]
            alerts += [alert for alert, _ in self.resolved.values()]
            if alerts:
                try:
                    await self._post(alerts)
                except Exception as exc:  # best effort: the next round tries again
                    self.log.warning("re-posting alerts failed", extra={"kv": {"error": str(exc)}})


factory = Factory("alertmanager", Kind.EXPORTER, AlertmanagerConfig, AlertmanagerExporter,
                  signals=frozenset({Signal.EVENTS}),
                  description="post alert decisions to Prometheus Alertmanager (v2 API), with leases and re-posts")

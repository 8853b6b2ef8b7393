"""The alertmanager exporter against a real Alertmanager: alerts are known by their label set.

Several trigger episodes can share one label set (a subject's daily budget at 80 % and at
100 %, and its burn rate, are all `high_cost` for that service): they are one alert, which
stays active until the last of them resolves. And an alert that fires again after its
resolution stays active although the old resolution is still re-posted for a while.
"""
from __future__ import annotations

import asyncio
from typing import Any

from exporters.alertmanager import AlertmanagerConfig, AlertmanagerExporter
from pipeline.component import ComponentID, Kind, Settings
from pipeline.pdata.events import Events
from pipeline.host import Host
from processors.safety.decision import decision
from testkit.alertmanager import Alertmanager

LABELS = {"alertname": "high_cost", "severity": "warning", "kind": "cost_budget", "service": "planner"}


def alert(action: str, episode: str) -> dict[str, Any]:
    """An `alert` / `resolve_alert` decision of one episode, as the safety processor makes it."""
    state = {"labels": LABELS, "annotations": {"summary": f"{episode} {action}"},
             "starts_at": "2026-11-24T00:00:00.000Z", "episode": episode}
    return decision(action, LABELS, state, {"event_id": f"{episode}/{action}"}, f"{episode} {action}")


async def exporter(am: Alertmanager, name: str, **config: Any) -> AlertmanagerExporter:
    started = AlertmanagerExporter(Settings.make(Kind.EXPORTER, ComponentID("alertmanager", name)),
                                   AlertmanagerConfig(endpoints=[am.url], sending_queue={"enabled": False}, **config))
    await started.start(Host())
    return started


def active(am: Alertmanager) -> list[dict[str, Any]]:
    return am.active(**LABELS)


def test_episodes_sharing_labels_are_one_alert_until_the_last_resolves(alertmanager: Alertmanager) -> None:
    async def go() -> None:
        am = await exporter(alertmanager, "shared")
        try:
            await am.consume(Events([alert("alert", "daily@0.8"), alert("alert", "daily@1"), alert("alert", "burn")]))
            assert len(active(alertmanager)) == 1
            await am.consume(Events([alert("resolve_alert", "burn")]))
            assert len(active(alertmanager)) == 1, "resolving the burn rate resolved the daily budget's alert"
            await am.consume(Events([alert("resolve_alert", "daily@0.8"), alert("resolve_alert", "daily@1")]))
            assert active(alertmanager) == []
        finally:
            await am.shutdown()

    asyncio.run(go())


def test_an_alert_firing_again_outlives_the_re_posts_of_its_old_resolution(alertmanager: Alertmanager) -> None:
    async def go() -> None:
        am = await exporter(alertmanager, "again", resend_interval=0.1)
        try:
            await am.consume(Events([alert("alert", "first")]))
            await am.consume(Events([alert("resolve_alert", "first")]))
            assert active(alertmanager) == []
            await am.consume(Events([alert("alert", "second")]))
            [posted] = active(alertmanager)
            # Watch two re-posts go by (Alertmanager stamps each update): the alert stays active.
            seen = {posted["updatedAt"]}
            for _ in range(100):
                await asyncio.sleep(0.05)
                now_active = active(alertmanager)
                if not now_active:
                    break
                seen |= {a["updatedAt"] for a in now_active}
                if len(seen) >= 3:
                    break
            assert len(active(alertmanager)) == 1, "a re-posted old resolution resolved the firing alert"
            assert len(seen) >= 3, "the exporter never re-posted"
        finally:
            await am.shutdown()

    asyncio.run(go())

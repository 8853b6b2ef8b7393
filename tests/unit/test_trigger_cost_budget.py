"""cost_budget: daily/monthly budgets per service and agent at alert fractions, and the hourly burn rate."""
from __future__ import annotations

import calendar

import pytest

from connectors.triggers.detectors.cost_budget import CostBudgetConfig, CostBudgetDetector, periods
from connectors.triggers.episodes import EpisodeTracker
from testkit.trigger_helpers import CLIENT, fired, observe_all, resource, span, traces

DAY = 86400.0
MONDAY = calendar.timegm((2026, 6, 1, 0, 0, 0))  # 2026-06-01 00:00 UTC


def spend(service: str, usd: float, at: float, agent: str | None = None, key: str = "gen_ai.usage.cost",
          calls: int = 1):
    attrs = {key: usd / calls, "gen_ai.request.model": "gpt-4o"}
    if agent:
        attrs["gen_ai.agent.name"] = agent
    return traces(resource(service, [span("chat gpt-4o", start=at, kind=CLIENT, attrs=attrs) for _ in range(calls)]),
                  received_at=at)


def test_defaults_are_the_product_ones() -> None:
    config = CostBudgetConfig()
    assert (config.daily_budget, config.monthly_budget, config.alert_fractions) == (10.0, 300.0, [0.8, 1.0])


def test_periods_are_utc_calendar_days_and_months() -> None:
    assert periods(MONDAY - 1) == ("2026-05-31", "2026-05")
    assert periods(MONDAY) == ("2026-06-01", "2026-06")


def test_80_percent_of_the_daily_budget_warns_and_100_percent_is_critical() -> None:
    detector = CostBudgetDetector(CostBudgetConfig(burn_rate=False))
    tracker = EpisodeTracker("triggers", resolve_after=60, resolve_ratio=0.8)
    t = MONDAY + 10 * 3600
    observe_all(detector, [spend("support-bot", 8.5, t, calls=17)])
    (warning,) = fired(detector, t + 1, tracker)
    assert (warning["kind"], warning["subject"], warning["severity"], warning["unit"]) == (
        "cost_budget", {"service": "support-bot"}, "warning", "usd")
    assert (warning["observed"], warning["threshold"]) == (pytest.approx(8.5), 8.0)
    assert "daily budget for 2026-06-01" in warning["message"] and "80%" in warning["message"]
    observe_all(detector, [spend("support-bot", 2.0, t + 60)])
    (critical,) = fired(detector, t + 61, tracker)
    assert (critical["severity"], critical["threshold"], critical["observed"]) == ("critical", 10.0, pytest.approx(10.5))
    assert critical["episode"] != warning["episode"]


def test_rollover_resolves_the_daily_episodes_at_once_and_months_add_up() -> None:
    detector = CostBudgetDetector(CostBudgetConfig(burn_rate=False))
    tracker = EpisodeTracker("triggers", resolve_after=60, resolve_ratio=0.8)
    statuses: list[tuple[str, str, str]] = []
    for day in range(30):  # $9 every day of June, at noon
        noon = MONDAY + day * DAY + 12 * 3600
        observe_all(detector, [spend("crew", 9.0, noon)])
        for now in (noon + 1, MONDAY + (day + 1) * DAY + 1):
            statuses += [(periods(now)[0], d["status"], d["message"].split(" budget")[0].split()[-1])
                         for d in fired(detector, now, tracker)]
    assert statuses[:2] == [("2026-06-01", "firing", "daily"), ("2026-06-02", "resolved", "daily")]
    assert ("2026-06-27", "firing", "monthly") in statuses  # 27 × $9 = $243 ≥ 0.8 × $300
    assert ("2026-07-01", "resolved", "monthly") in statuses  # the month rolled over
    assert sum(1 for _, status, period in statuses if period == "daily" and status == "firing") == 30


def test_hourly_burn_rate_warns_before_the_budget_is_reached() -> None:
    detector = CostBudgetDetector(CostBudgetConfig())
    t = MONDAY + 3600
    observe_all(detector, [spend("sprinter", 1.0, t + 60 * m, calls=2) for m in range(5)])  # $5 in 5 minutes
    (doc,) = fired(detector, t + 300)
    assert doc["observed"] == pytest.approx(5.0 * 24) and doc["threshold"] == 10.0
    assert doc["severity"] == "warning" and "a day at that rate" in doc["message"]


def test_steady_spend_within_budget_raises_nothing() -> None:
    detector = CostBudgetDetector(CostBudgetConfig())
    tracker = EpisodeTracker("triggers", resolve_after=60, resolve_ratio=0.8)
    docs = []
    for hour in range(72):  # $6 a day, spread over the hours, with noise
        t = MONDAY + hour * 3600
        observe_all(detector, [spend("steady", 0.25 + (0.1 if hour % 3 == 0 else -0.05), t + 1800, calls=5)])
        docs += fired(detector, t + 3599, tracker)
    assert docs == []


def test_agents_are_budgeted_too_and_llm_cost_total_is_read() -> None:
    config = CostBudgetConfig(burn_rate=False, per_service=False,
                              budgets=[{"match": {"agent": "researcher"}, "daily": 50.0}])
    detector = CostBudgetDetector(config)
    t = MONDAY + 3600
    observe_all(detector, [spend("svc", 9.0, t, agent="writer", key="llm.cost.total"),
                           spend("svc", 30.0, t, agent="researcher")])
    observations = [o for o in detector.evaluate(t + 1) if o.firing]
    assert [(o.subject, o.threshold) for o in observations] == [({"agent": "writer"}, 8.0)]
    assert detector.budgets_for({"agent": "researcher"}) == (50.0, 300.0)


def test_override_threshold_sets_the_daily_budget() -> None:
    config = CostBudgetConfig(burn_rate=False, overrides=[{"match": {"service": "batch-job"}, "threshold": 100.0}])
    detector = CostBudgetDetector(config)
    observe_all(detector, [spend("batch-job", 50.0, MONDAY + 60)])
    assert detector.evaluate(MONDAY + 61) == []

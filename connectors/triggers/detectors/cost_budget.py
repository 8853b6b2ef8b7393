"""cost_budget: spend per service and per agent against daily ($10) and monthly ($300) budgets.

What fires:
- Budget alerts: when a subject's spend in the current UTC calendar day (month) reaches
  each of `alert_fractions` (0.8, 1.0) of its daily (monthly) budget — one episode per
  (subject, period, fraction), severity `warning` below `critical_fraction` (1.0) and
  `critical` from it. `observed` is the spend so far in the period, `threshold` the
  fraction × budget, unit `usd`. Spend only grows within a period, so the episode lasts
  until the period rolls over, when it resolves at once (no `resolve_after` wait).
- Burn rate (`burn_rate: true`): the spend of the last `burn_window` (1 h) scaled to a day
  (× 24 for an hour) above the daily budget — a warning with the usual hysteresis.

Cost of a span: `gen_ai.usage.cost` (USD, written by the `genai` processor), else
`llm.cost.total` (OpenInference). Spend is counted at the time the daemon receives it.

Subject: `{service}` (`per_service`) and `{agent}` for spans with `gen_ai.agent.name`
(`per_agent`). Budgets per subject: `budgets: [{match: {agent: planner}, daily: 50,
monthly: 1000}]`; the shared `overrides[].threshold` sets the daily budget. A budget of
`null` turns that period off. The message names the period, its date and the fraction.

Bounded state: spend is kept for at most `max_subjects` (5,000) subjects. Past that, at each
evaluation the subjects that spent least this month and have no alert open are forgotten
(`agentdbg_trigger_state_evictions_total{reason="subject_evicted"}`): the big spenders, which
budgets are for, stay counted. The burn-rate window only holds subjects whose spend is kept.
"""
from __future__ import annotations

import heapq
import time
from itertools import compress, repeat
from operator import lt
from typing import Any, Mapping, Sequence

from pydantic import Field, PositiveFloat

from connectors.triggers.checkpoint_state import DictPart, Part, examples_part
from connectors.triggers.columnar import rows_with_fallback, take, where
from connectors.triggers.detectors.base import BoundedConfig, Detector
from connectors.triggers.event import Examples, Observation
from connectors.triggers.windows import SlidingSums
from pipeline.component import StrictConfig
from pipeline.config.units import Duration
from pipeline.pdata.spans import SpanColumns
from pipeline.pdata.traces import Traces

DAY = 86400.0
SubjectKey = tuple[str, str]  # ("service" | "agent", name)
NUMBER_TYPES = frozenset({int, float})


class Budget(StrictConfig):
    match: dict[str, str]
    daily: PositiveFloat | None = None
    monthly: PositiveFloat | None = None


class CostBudgetConfig(BoundedConfig):
    daily_budget: PositiveFloat | None = 10.0
    monthly_budget: PositiveFloat | None = 300.0
    alert_fractions: list[PositiveFloat] = Field(default_factory=lambda: [0.8, 1.0])
    critical_fraction: PositiveFloat = 1.0
    burn_rate: bool = True
    burn_window: Duration = 3600.0
    per_service: bool = True
    per_agent: bool = True
    budgets: list[Budget] = Field(default_factory=list)


def periods(ts: float) -> tuple[str, str]:
    """(UTC day `YYYY-MM-DD`, UTC month `YYYY-MM`) of a time."""
    t = time.gmtime(ts)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}", f"{t.tm_year:04d}-{t.tm_mon:02d}"


class Spend:
    __slots__ = ("day", "day_usd", "month", "month_usd")

    def __init__(self, day: str, month: str) -> None:
        self.day, self.month = day, month
        self.day_usd = self.month_usd = 0.0

    def roll(self, day: str, month: str) -> None:
        if day != self.day:
            self.day, self.day_usd = day, 0.0
        if month != self.month:
            self.month, self.month_usd = month, 0.0

    def dump(self) -> list[Any]:
        return [self.day, self.day_usd, self.month, self.month_usd]

    @classmethod
    def load(cls, value: list[Any]) -> Spend:
        spend = cls(value[0], value[2])
        spend.day_usd, spend.month_usd = value[1], value[3]
        return spend

    def add(self, day: str, month: str, usd: float) -> None:
        if day < self.day or month < self.month:
            return  # a batch timed before the current period (clock step back): not this period's spend
        self.roll(day, month)
        self.day_usd += usd
        self.month_usd += usd


class FiringPart:
    """The alerts open per subject (a checkpoint's part): `{subject: [qualifier, ...]}`."""

    def __init__(self, firing: set[tuple[SubjectKey, str]]) -> None:
        self.firing = firing

    def export(self) -> dict[Any, Any]:
        out: dict[SubjectKey, list[str]] = {}
        for key, qualifier in self.firing:
            out.setdefault(key, []).append(qualifier)
        return out

    def load(self, values: Mapping[Any, Any]) -> None:
        self.firing.update((key, qualifier) for key, qualifiers in values.items() for qualifier in qualifiers)

    def forget(self, key: Any) -> None:
        self.firing.difference_update({item for item in self.firing if item[0] == key})


class CostBudgetDetector(Detector[CostBudgetConfig]):
    kind = "cost_budget"
    attribute_keys = ("gen_ai.usage.cost", "llm.cost.total", "gen_ai.agent.name")

    def __init__(self, config: CostBudgetConfig) -> None:
        super().__init__(config)
        self.spend: dict[SubjectKey, Spend] = {}
        self.burn: SlidingSums[SubjectKey] = SlidingSums(
            config.burn_window, bucket=max(config.burn_window / 60, 0.05), width=2)
        self.firing: set[tuple[SubjectKey, str]] = set()
        self.examples: dict[SubjectKey, Examples] = {}

    def state_parts(self) -> dict[str, Part]:
        return {"spend": DictPart(self.spend, Spend.dump, Spend.load), "burn": self.burn,
                "examples": examples_part(self.examples), "firing": FiringPart(self.firing)}

    # -- hot path --------------------------------------------------------------------------------
    def observe(self, batch: Traces) -> None:
        cols = batch.columns
        costs = self._costs(cols)  # {span index: cost} of the spans that carry one
        numbers = list(compress(costs, map(NUMBER_TYPES.__contains__, map(type, costs.values()))))  # not bool/text
        amounts: Sequence[Any] = list(map(costs.__getitem__, numbers))
        positive = where(map(lt, repeat(0), amounts), len(amounts))
        if not positive:
            return
        picked, amounts = take(numbers, positive), take(amounts, positive)
        partial: dict[SubjectKey, list[Any]] = {}
        if self.config.per_service:
            self._fold(partial, "service", take(cols.service, picked), amounts, picked)
        if self.config.per_agent and cols.present("gen_ai.agent.name"):
            self._fold(partial, "agent", cols.values_at("gen_ai.agent.name", picked), amounts, picked)
        now = batch.received_at
        day, month = periods(now)
        for key, (usd, last) in partial.items():
            spend = self.spend.get(key)
            if spend is None:
                self.spend[key] = spend = Spend(day, month)
            spend.add(day, month, usd)
            self.burn.add(now, key, (1, usd))
            self.examples.setdefault(key, Examples()).add(cols.trace_id[last], cols.span_id[last])

    @staticmethod
    def _costs(cols: SpanColumns) -> dict[int, Any]:
        return rows_with_fallback(cols, "gen_ai.usage.cost", "llm.cost.total")

    @staticmethod
    def _fold(partial: dict[SubjectKey, list[Any]], what: str, names: Any, amounts: Any, picked: Any) -> None:
        """Sum the amounts per (what, name) and note the last span of each; spans without an agent
        name are not counted for an agent."""
        agents = what == "agent"
        for name, usd, index in zip(names, amounts, picked):
            if agents:
                if not name:
                    continue
                name = str(name)
            key = (what, name)
            slot = partial.get(key)
            if slot is None:
                partial[key] = [usd, index]
            else:
                slot[0] += usd
                slot[1] = index

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, now: float) -> list[Observation]:
        day, month = periods(now)
        out: list[Observation] = []
        for key, spend in list(self.spend.items()):
            spend.roll(day, month)
            daily, monthly = self.budgets_for({key[0]: key[1]})
            out.extend(self._period(key, "daily", spend.day, spend.day_usd, daily, now))
            out.extend(self._period(key, "monthly", spend.month, spend.month_usd, monthly, now))
            if spend.month_usd == 0 and not any(k == key for k, _ in self.firing):
                del self.spend[key]
                self.examples.pop(key, None)
        self._within_bound()
        if self.config.burn_rate:
            out.extend(self._burn(now))
        return out

    def _within_bound(self) -> None:
        """Forget the smallest spenders without an open alert past max_subjects."""
        excess = len(self.spend) - self.config.max_subjects
        if excess <= 0:
            return
        alerting = {key for key, _ in self.firing}
        quiet = [key for key in self.spend if key not in alerting]
        for key in heapq.nsmallest(excess, quiet, key=lambda k: self.spend[k].month_usd):
            del self.spend[key]
            self.examples.pop(key, None)
            self.burn.forget(key)
        self.evict("subject_evicted", min(excess, len(quiet)))

    def budgets_for(self, subject: dict[str, Any]) -> tuple[float | None, float | None]:
        daily, monthly = self.config.daily_budget, self.config.monthly_budget
        if daily is not None:
            daily = self.threshold_for(subject, daily)
        for budget in self.config.budgets:
            if all(str(subject.get(k)).lower() == str(v).lower() for k, v in budget.match.items()):
                return budget.daily or daily, budget.monthly or monthly
        return daily, monthly

    def _period(self, key: SubjectKey, period: str, label: str, usd: float, budget: float | None,
                now: float) -> list[Observation]:
        if budget is None:
            return []
        out = []
        for fraction in self.config.alert_fractions:
            qualifier = f"{period}@{fraction:g}"
            firing = usd >= fraction * budget
            if not firing and (key, qualifier) not in self.firing:
                continue
            start = self._period_start(period, now)
            (self.firing.add if firing else self.firing.discard)((key, qualifier))
            severity = "critical" if fraction >= self.config.critical_fraction else self.config.severity
            out.append(Observation(
                self.kind, {key[0]: key[1]}, round(usd, 6), round(fraction * budget, 6), "usd", (start, now),
                severity,
                f"{key[0]} {key[1]}: spent ${usd:.2f} of its ${budget:.2f} {period} budget for {label} UTC "
                f"({usd / budget:.0%}; alert at {fraction:.0%})", self.examples.get(key, Examples()),
                firing=firing, qualifier=qualifier, resolve_after=None if firing else 0.0))
        return out

    @staticmethod
    def _period_start(period: str, now: float) -> float:
        t = time.gmtime(now)
        day_start = now - (t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec + now % 1)
        return day_start if period == "daily" else day_start - (t.tm_mday - 1) * DAY

    def _burn(self, now: float) -> list[Observation]:
        self.burn.expire(now)
        window = self.burn.span(now)
        scale = DAY / self.config.burn_window
        out = []
        for key, (_, usd) in self.burn.totals.items():
            daily, _ = self.budgets_for({key[0]: key[1]})
            if daily is None:
                continue
            projected = usd * scale
            out.append(Observation(
                self.kind, {key[0]: key[1]}, round(projected, 6), daily, "usd", window, self.config.severity,
                f"{key[0]} {key[1]}: spent ${usd:.2f} in the last {self.config.burn_window / 3600:g}h, "
                f"${projected:.2f} a day at that rate, over its ${daily:.2f} daily budget",
                self.examples.get(key, Examples()), qualifier="burn"))
        return out

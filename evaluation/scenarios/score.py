"""Per-detector scores over the suite's outcomes: recall, false positives, latency, resolution."""
from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median

from evaluation.scenarios.labels import ROWS
from evaluation.scenarios.runner import Outcome


@dataclass
class RowScore:
    row: str
    injected: int = 0
    detected: int = 0
    latencies: list[float] = field(default_factory=list)
    ending: int = 0  # faults that end inside their scenario
    resolved_after: list[float] = field(default_factory=list)
    episodes: list[int] = field(default_factory=list)  # detection episodes per detected fault
    fp_scenarios: int = 0
    fp_events: int = 0
    consequence_events: int = 0

    @property
    def recall(self) -> float | None:
        return self.detected / self.injected if self.injected else None


@dataclass
class SuiteScore:
    rows: dict[str, RowScore]
    scenarios: int
    service_hours: float

    def fp_rate(self, row: RowScore) -> float:
        return row.fp_scenarios / self.scenarios if self.scenarios else 0.0

    def fp_per_100_service_hours(self, row: RowScore) -> float:
        return 100 * row.fp_events / self.service_hours if self.service_hours else 0.0


def score(outcomes: list[Outcome]) -> SuiteScore:
    rows = {name: RowScore(name) for name in ROWS}
    for outcome in outcomes:
        for event in outcome.false_positives:
            rows.setdefault(event.row, RowScore(event.row)).fp_events += 1
        for name in {e.row for e in outcome.false_positives}:
            rows[name].fp_scenarios += 1
        for event in outcome.consequences:
            rows.setdefault(event.row, RowScore(event.row)).consequence_events += 1
        label = outcome.label
        if label is None:
            continue
        row = rows[label.row]
        row.injected += 1
        row.ending += label.end is not None
        if outcome.latency is not None:
            row.detected += 1
            row.latencies.append(outcome.latency)
            row.episodes.append(len({e.episode for e in outcome.detections}))
        if outcome.resolved_after is not None:
            row.resolved_after.append(outcome.resolved_after)
    hours = sum(o.services * o.scenario.duration / 3600 for o in outcomes)
    return SuiteScore(rows, len(outcomes), hours)


def p50_max(values: list[float]) -> str:
    return f"{median(values):.0f} / {max(values):.0f}" if values else "-"

"""Drive the real `genai` processor and `triggers` connector through a scenario in simulated time.

What users get is the default pipeline `genai → triggers` with the product defaults, so
that is what runs: `GenAIConfig()` and `TriggersConfig()`, unchanged. Spans go in through
the processor's and the connector's own `consume` (one batch per simulated second, with
`received_at` at that second); metrics go straight to the connector, as the default
metrics pipeline has no genai. The connector's evaluation loop reads the wall clock, so
its body is done here with an explicit `now`: each detector's `evaluate(now)` fed to the
connector's own `EpisodeTracker`, then its `emit(now)` — every `evaluation_interval` of
simulated time, as the loop would.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from evaluation.scenarios.simfleet import SimFleet
from connectors.triggers import TriggersConnector
from connectors.triggers.config import TriggersConfig
from connectors.triggers.telemetry import detector_errors
from pipeline.component import ComponentID, Kind, Settings, Signal
from processors.genai import GenAIConfig, GenAIProcessor


@dataclass
class Emitted:
    at: float  # simulated time of the evaluation that emitted it
    doc: dict[str, Any]


@dataclass
class Run:
    events: list[Emitted] = field(default_factory=list)
    spans: int = 0
    snapshots: int = 0
    detector_errors: int = 0


def build(config: TriggersConfig) -> tuple[GenAIProcessor, TriggersConnector]:
    connector = TriggersConnector(Settings.make(Kind.CONNECTOR, ComponentID("triggers")), config)
    genai = GenAIProcessor(Settings.make(Kind.PROCESSOR, ComponentID("genai"), Signal.TRACES), GenAIConfig(),
                           connector)
    return genai, connector


def evaluate(connector: TriggersConnector, now: float) -> list[dict[str, Any]]:
    """One pass of the connector's evaluation loop at simulated time `now`."""
    out: list[dict[str, Any]] = []
    for detector in connector.detectors:
        out.extend(connector.tracker.update(detector.kind, detector.evaluate(now), now))
        out.extend(detector.emit(now, str(connector.id)))
    return out


def _detector_errors() -> int:
    """The connector logs and counts a failing detector instead of raising: read the count."""
    return int(sum(sample.value for metric in detector_errors.collect() for sample in metric.samples
                   if sample.name.endswith("_total")))


async def _drive(fleet: SimFleet, duration: int, config: TriggersConfig) -> Run:
    genai, connector = build(config)
    run = Run()
    errors_before = _detector_errors()
    steps = max(1, round(1 / config.evaluation_interval))
    for t in range(1, duration + 1):
        traces, metrics = fleet.second(t)
        if traces is not None:
            run.spans += traces.item_count
            await genai.consume(traces)
        if metrics is not None:
            await connector.consume(metrics)
        for k in range(steps):
            now = fleet.start_s + t + k * config.evaluation_interval
            for doc in evaluate(connector, now):
                if doc["kind"] == "health_snapshot":
                    run.snapshots += 1
                else:
                    run.events.append(Emitted(now, doc))
    run.detector_errors = _detector_errors() - errors_before
    return run


def drive(fleet: SimFleet, duration: int, config: TriggersConfig | None = None) -> Run:
    """Run `duration` simulated seconds of `fleet` through genai → triggers; the events emitted."""
    return asyncio.run(_drive(fleet, duration, config or TriggersConfig()))

"""Drive the real `genai` processor and `triggers` connector through a scenario in simulated time.

What users get is the default pipeline `genai → triggers` with the product defaults, so
that is what runs: `GenAIConfig()` and `TriggersConfig()`, unchanged. Spans go in through
the processor's and the connector's own `consume` (one batch per simulated second, with
`received_at` at that second); metrics go straight to the connector, as the default
metrics pipeline has no genai. The connector's evaluation loop sleeps on its clock, so its
body is done here on a `ManualClock` at simulated time: every `evaluation_interval` the clock
is moved on and the connector observes the batches and runs the evaluations its event-time
watermark has passed (`evaluate_due`), as the loop would.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import Any

from evaluation.scenarios.simfleet import SimFleet
from connectors.triggers import TriggersConnector
from connectors.triggers.config import TriggersConfig
from connectors.triggers.telemetry import detector_errors
from pipeline.clock import ManualClock
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


def build(config: TriggersConfig, start: float) -> tuple[GenAIProcessor, TriggersConnector]:
    """genai → triggers, the connector on a ManualClock at `start` (simulated seconds)."""
    settings = replace(Settings.make(Kind.CONNECTOR, ComponentID("triggers")), clock=ManualClock(start))
    connector = TriggersConnector(settings, config)
    genai = GenAIProcessor(Settings.make(Kind.PROCESSOR, ComponentID("genai"), Signal.TRACES), GenAIConfig(),
                           connector)
    return genai, connector


async def evaluate(connector: TriggersConnector, now: float) -> list[dict[str, Any]]:
    """One pass of the connector's evaluation loop at simulated time `now`."""
    clock = connector.order.clock
    assert isinstance(clock, ManualClock), "build() gives the connector a ManualClock"
    await clock.advance_to(now)
    return connector.evaluate_due()


def _detector_errors() -> int:
    """The connector logs and counts a failing detector instead of raising: read the count."""
    return int(sum(sample.value for metric in detector_errors.collect() for sample in metric.samples
                   if sample.name.endswith("_total")))


async def _drive(fleet: SimFleet, duration: int, config: TriggersConfig) -> Run:
    genai, connector = build(config, fleet.start_s)
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
            for doc in await evaluate(connector, now):
                if doc["kind"] == "health_snapshot":
                    run.snapshots += 1
                else:
                    run.events.append(Emitted(now, doc))
    run.detector_errors = _detector_errors() - errors_before
    return run


def drive(fleet: SimFleet, duration: int, config: TriggersConfig | None = None) -> Run:
    """Run `duration` simulated seconds of `fleet` through genai → triggers; the events emitted."""
    return asyncio.run(_drive(fleet, duration, config or TriggersConfig()))

"""Run one scenario and judge its events against its label.

`run_scenario` builds the (faulty) fleet, drives it through the pipeline (`harness.drive`)
and sorts every firing event into a detection of the injected fault, a consequence of it,
or a false positive. Results are plain data so worker processes can hand them back.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from evaluation.scenarios.catalogue import Scenario
from evaluation.scenarios.faults import FaultyFleet
from evaluation.scenarios.harness import drive
from evaluation.scenarios.labels import Label, label_for, row_of_event


@dataclass
class Event:
    at: float  # seconds after the scenario's start
    row: str
    status: str
    episode: str
    subject_key: str
    observed: float
    threshold: float
    message: str


@dataclass
class Outcome:
    scenario: Scenario
    label: Label | None
    services: int
    spans: int
    snapshots: int
    detector_errors: int
    cpu_seconds: float
    detections: list[Event] = field(default_factory=list)
    consequences: list[Event] = field(default_factory=list)
    false_positives: list[Event] = field(default_factory=list)
    resolutions: list[Event] = field(default_factory=list)  # resolved events of detected episodes

    @property
    def latency(self) -> float | None:
        """Seconds from the fault's start to its first detection."""
        if self.label is None or not self.detections:
            return None
        return self.detections[0].at - self.label.start

    @property
    def resolved_after(self) -> float | None:
        """Seconds from the fault's end until every detected episode had resolved; None when
        one had not by the end of the scenario (or the fault never ends)."""
        if self.label is None or self.label.end is None or not self.detections:
            return None
        episodes = {e.episode for e in self.detections}
        resolved = {e.episode: e.at for e in self.resolutions}
        if not episodes <= set(resolved):
            return None
        return max(resolved.values()) - self.label.end


def _event(at: float, doc: dict[str, Any]) -> Event:
    return Event(round(at, 2), row_of_event(doc), doc["status"], doc["episode"], doc["subject_key"],
                 doc["observed"], doc["threshold"], doc["message"])


def run_scenario(scenario: Scenario) -> Outcome:
    started = time.process_time()
    profiles = scenario.profiles()
    fleet = FaultyFleet(seed=scenario.fleet_seed, profiles=profiles, fault=scenario.fault)
    run = drive(fleet, scenario.duration)
    label = (label_for(scenario.fault, profiles, fleet.injected_session, fleet.injected_end)
             if scenario.fault is not None else None)
    outcome = Outcome(scenario, label, len(profiles), run.spans, run.snapshots, run.detector_errors, 0.0)
    detected: set[str] = set()
    for emitted in run.events:
        at, doc = emitted.at - fleet.start_s, emitted.doc
        event = _event(at, doc)
        if doc["status"] == "resolved":
            if doc["episode"] in detected:
                outcome.resolutions.append(event)
            continue
        if label is not None and at >= label.start and label.detects(doc):
            outcome.detections.append(event)
            detected.add(doc["episode"])
        elif label is not None and at >= label.start and label.explains(doc):
            outcome.consequences.append(event)
        else:  # includes a matching subject firing before the fault began
            outcome.false_positives.append(event)
    outcome.cpu_seconds = time.process_time() - started
    return outcome

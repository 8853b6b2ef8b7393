"""The labelled scenario suite's machinery (evaluation/scenarios, run in full by
`python -m evaluation.scenarios`) on two short scenarios through the real genai processor
and triggers connector with the product defaults: an injected fault is labelled and
detected on its subject, and a healthy fleet raises nothing."""
from __future__ import annotations

from evaluation.scenarios.catalogue import Scenario
from evaluation.scenarios.faults import BLOCKED_SECONDS, Fault
from evaluation.scenarios.runner import run_scenario

SHORT = 300  # simulated seconds: enough for three blocked calls, their detection and resolution


def test_an_injected_deadlock_is_labelled_detected_and_resolved() -> None:
    fault = Fault("deadlock", "coder-agent", start=60.0)
    outcome = run_scenario(Scenario("test/deadlock", 1, "standard", SHORT, fault))

    label = outcome.label
    assert label is not None and label.row == "deadlock"
    assert [str(e) for e in label.expect] == ["deadlock {service=coder-agent, agent=coder}"]
    assert label.start == 60.0 and label.end is not None and label.end > 60.0 + 80.0  # the third blocked call

    assert outcome.detections, "the blocked agent raised no deadlock event"
    first = outcome.detections[0]
    assert (first.row, first.status, first.subject_key) == ("deadlock", "firing", "service=coder-agent,agent=coder")
    assert first.observed >= BLOCKED_SECONDS and first.threshold == 10.0
    assert outcome.latency is not None and outcome.latency >= BLOCKED_SECONDS  # it is seen once the span ends
    assert outcome.resolved_after is not None  # the episode resolved after the last blocked call
    assert outcome.false_positives == []
    assert outcome.detector_errors == 0


def test_a_healthy_fleet_raises_nothing() -> None:
    outcome = run_scenario(Scenario("test/healthy", 1, "standard", SHORT, None))

    assert outcome.label is None
    assert outcome.spans > 1000 and outcome.snapshots > 0  # the traffic really went through the connector
    # coder-agent's 3 s test runs leave its traces quiet for longer than the deadlock decision
    # wait before their agent span arrives: none of them may look blocked.
    assert outcome.false_positives == [] and outcome.detections == [] and outcome.consequences == []
    assert outcome.detector_errors == 0

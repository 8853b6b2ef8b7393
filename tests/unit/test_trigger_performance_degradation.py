"""performance_degradation in process, on explicit time: the baseline is learned from what the
window saw, the window rolls with the batches' receive times, and a slow-down fires with the
window's typical response. The daemon test (tests/integration/test_triggers_daemon.py) checks
the same end to end; here the window's roll costs no real seconds."""
from __future__ import annotations

import random

import pytest

from connectors.triggers.detectors.performance_degradation import (
    PerformanceDegradationConfig,
    PerformanceDegradationDetector,
)
from testkit.trigger_helpers import SERVER, T0, fired, firing, observe_all, resource, span, traces

CONFIG = PerformanceDegradationConfig(window=1.0, min_samples=5, min_baseline=20)


def calls(service: str, at: float, count: int, mu: float, sigma: float, rng: random.Random):
    """`count` server spans of `service` received at `at`, durations lognormal(mu, sigma) seconds."""
    items = [span("POST /plan", trace=i + 1, kind=SERVER, start=at, duration=rng.lognormvariate(mu, sigma))
             for i in range(count)]
    return traces(resource(service, items), received_at=at)


def test_a_slow_down_fires_once_the_baseline_has_left_the_window() -> None:
    detector, rng = PerformanceDegradationDetector(CONFIG), random.Random(1)
    for service in ("steady-agent", "checkout-agent"):  # both learn a ~50 ms baseline
        observe_all(detector, [calls(service, T0, 30, -3.0, 0.2, rng)])
    assert firing(detector.evaluate(T0 + 0.1)) == []
    later = T0 + 2.2  # 2.2 s later on the batches' own clock: the baseline spans left the 1 s window
    observe_all(detector, [calls("steady-agent", later, 20, -3.0, 0.35, rng),
                           calls("checkout-agent", later, 20, -0.7, 0.1, rng)])
    [event] = fired(detector, later + 0.1)
    assert event["subject"] == {"service": "checkout-agent", "span_name": "POST /plan"}
    assert event["observed"] == pytest.approx(0.5, rel=0.15) and event["threshold"] == pytest.approx(0.1, rel=0.15)
    assert event["unit"] == "seconds"


def test_while_the_baseline_spans_are_in_the_window_the_typical_response_mixes_both() -> None:
    detector, rng = PerformanceDegradationDetector(CONFIG), random.Random(1)
    observe_all(detector, [calls("checkout-agent", T0, 30, -3.0, 0.2, rng)])
    detector.evaluate(T0 + 0.1)
    observe_all(detector, [calls("checkout-agent", T0 + 0.2, 20, -0.7, 0.1, rng)])
    [event] = fired(detector, T0 + 0.3)
    # The geometric mean of 30 calls of ~50 ms and 20 of ~500 ms: over 2x, but far from 500 ms.
    assert 0.1 < event["observed"] < 0.2


def test_a_slow_down_is_not_learned_as_the_new_baseline() -> None:
    detector, rng = PerformanceDegradationDetector(CONFIG), random.Random(2)
    observe_all(detector, [calls("checkout-agent", T0, 30, -3.0, 0.2, rng)])
    detector.evaluate(T0 + 0.1)
    for second in range(2, 12):  # ten seconds of slow calls, the window rolling all along
        observe_all(detector, [calls("checkout-agent", T0 + second, 20, -0.7, 0.1, rng)])
        [observation] = detector.evaluate(T0 + second + 0.1)
        assert observation.threshold == pytest.approx(0.1, rel=0.15)  # the baseline is frozen

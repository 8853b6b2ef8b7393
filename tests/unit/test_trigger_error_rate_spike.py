"""error_rate_spike: a rate over 5 % with confidence (Wilson lower bound), hysteresis on the rate."""
from __future__ import annotations

from connectors.triggers.detectors.error_rate_spike import ErrorRateSpikeConfig, ErrorRateSpikeDetector, wilson_lower_bound
from connectors.triggers.episodes import EpisodeTracker
from testkit.trigger_helpers import SERVER, T0, firing, observe_all, resource, span, traces


def batch(service: str, spans: int, errors: int, at: float):
    items = [span("POST /order", trace=i + 1, kind=SERVER, start=at, error=i < errors) for i in range(spans)]
    return traces(resource(service, items), received_at=at)


def test_wilson_bound_matches_hand_figures():
    assert round(wilson_lower_bound(3, 100, 1.645), 3) == 0.012
    assert round(wilson_lower_bound(15, 100, 1.645), 3) == 0.101
    assert wilson_lower_bound(0, 0, 1.645) == 0.0


def test_a_quiet_service_with_three_unrelated_failures_does_not_fire():
    detector = ErrorRateSpikeDetector(ErrorRateSpikeConfig())
    observe_all(detector, [batch("billing", 20, 1, T0 + i) for i in range(3)])  # 3 of 60 = 5 %
    [obs] = detector.evaluate(T0 + 3)
    assert obs.observed == 0.05 and not firing([obs])


def test_a_real_spike_fires_with_the_observed_rate_and_clears_with_hysteresis():
    detector = ErrorRateSpikeDetector(ErrorRateSpikeConfig(window=60))
    tracker = EpisodeTracker("triggers", resolve_after=0.0, resolve_ratio=0.8)
    observe_all(detector, [batch("checkout", 50, 8, T0), batch("checkout", 50, 7, T0 + 1)])
    [fired] = tracker.update(detector.kind, detector.evaluate(T0 + 2), T0 + 2)
    assert fired["status"] == "firing" and fired["subject"] == {"service": "checkout"}
    assert fired["observed"] == 0.15 and fired["unit"] == "ratio"
    # 4.5 %: not firing any more, but above 0.8 × 5 %: the episode stays open.
    observe_all(detector, [batch("checkout", 1000, 30, T0 + 3)])
    assert tracker.update(detector.kind, detector.evaluate(T0 + 4), T0 + 4) == []
    observe_all(detector, [batch("checkout", 4000, 0, T0 + 5)])
    [resolved] = tracker.update(detector.kind, detector.evaluate(T0 + 6), T0 + 6)
    assert resolved["status"] == "resolved" and resolved["episode"] == fired["episode"]


def test_below_min_count_nothing_is_judged():
    detector = ErrorRateSpikeDetector(ErrorRateSpikeConfig())
    observe_all(detector, [batch("tiny", 10, 10, T0)])
    assert detector.evaluate(T0 + 1) == []

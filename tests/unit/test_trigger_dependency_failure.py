"""dependency_failure: more than 3 timed-out CLIENT calls to one target in 60 s."""
from __future__ import annotations

import pytest

from connectors.triggers.detectors.dependency_failure import DependencyFailureConfig, DependencyFailureDetector
from connectors.triggers.episodes import EpisodeTracker
from testkit.trigger_helpers import CLIENT, SERVER, T0, fired, firing, observe_all, resource, span, traces


def call(target_key: str, target: str, t: float, *, error: bool = False, message: str = "", events=(),
         kind: int = CLIENT, **attrs):
    return span("GET", start=t, duration=0.2, kind=kind, error=error, message=message, events=events,
                attrs={target_key: target, **attrs})


def test_defaults_are_the_product_ones() -> None:
    config = DependencyFailureConfig()
    assert (config.max_timeouts, config.window, config.severity) == (3, 60.0, "critical")


@pytest.mark.parametrize("timeout", [
    {"error": True, "attrs": {"error.type": "TimeoutError"}},
    {"error": True, "attrs": {"error.type": "httpx.ReadTimeout"}},
    {"error": True, "attrs": {"error.type": "DEADLINE_EXCEEDED"}},
    {"error": True, "attrs": {"error.type": "timeout"}},
    {"error": True, "attrs": {"http.response.status_code": 504}},
    {"error": False, "attrs": {"error.type": "408", "http.response.status_code": 408}},
    {"error": True, "attrs": {"rpc.grpc.status_code": 4}},
    {"error": True, "message": "upstream request timed out", "attrs": {}},
    {"error": True, "events": [("exception", {"exception.type": "requests.exceptions.ConnectTimeout"})], "attrs": {}},
])
def test_every_kind_of_timeout_counts(timeout) -> None:
    detector = DependencyFailureDetector(DependencyFailureConfig())
    spans = [call("peer.service", "weather-api", T0 + i, error=timeout["error"], message=timeout.get("message", ""),
                  events=timeout.get("events", ()), **timeout["attrs"]) for i in range(4)]
    observe_all(detector, [traces(resource("planner", spans), received_at=T0 + 4)])
    (doc,) = fired(detector, T0 + 5)
    assert (doc["kind"], doc["subject"], doc["observed"], doc["threshold"], doc["unit"], doc["severity"]) == (
        "dependency_failure", {"service": "planner", "dependency": "weather-api"}, 4, 3, "count", "critical")
    assert len(doc["examples"]["span_ids"]) == 4


def test_three_timeouts_and_other_failures_do_not_fire() -> None:
    detector = DependencyFailureDetector(DependencyFailureConfig())
    spans = [call("server.address", "db.internal", T0 + i, error=True, **{"error.type": "TimeoutError"}) for i in range(3)]
    spans += [call("server.address", "db.internal", T0 + i, error=True, **{"error.type": "ConnectionRefusedError"})
              for i in range(20)]
    spans += [call("server.address", "db.internal", T0 + i, error=True, **{"http.response.status_code": 503})
              for i in range(20)]
    spans += [call("server.address", "db.internal", T0 + i, **{"http.response.status_code": 200}) for i in range(200)]
    # Timeouts seen by a server (not an outgoing call) are not a dependency's fault.
    spans += [call("server.address", "db.internal", T0 + i, kind=SERVER, error=True, **{"error.type": "TimeoutError"})
              for i in range(10)]
    observe_all(detector, [traces(resource("planner", spans), received_at=T0 + 30)])
    observations = detector.evaluate(T0 + 31)
    assert [o.observed for o in observations] == [3] and firing(observations) == []


def test_target_precedence_and_providers() -> None:
    detector = DependencyFailureDetector(DependencyFailureConfig())
    spans = [span("chat gpt-4o", start=T0 + i, kind=CLIENT, error=True,
                  attrs={"gen_ai.provider.name": "openai", "error.type": "APITimeoutError"}) for i in range(4)]
    spans += [span("GET", start=T0 + i, kind=CLIENT, error=True,
                   attrs={"peer.service": "payments", "server.address": "10.0.0.7", "error.type": "Timeout"})
              for i in range(4)]
    observe_all(detector, [traces(resource("agent", spans))])
    assert sorted(o.subject["dependency"] for o in firing(detector.evaluate(T0 + 5))) == ["openai", "payments"]


def test_window_slides_and_the_episode_resolves() -> None:
    detector = DependencyFailureDetector(DependencyFailureConfig())
    tracker = EpisodeTracker("triggers", resolve_after=10, resolve_ratio=0.8)
    spans = [call("peer.service", "search", T0 + i, error=True, **{"error.type": "ReadTimeout"}) for i in range(5)]
    observe_all(detector, [traces(resource("a", spans), received_at=T0)])
    assert [d["status"] for d in fired(detector, T0 + 1, tracker)] == ["firing"]
    assert fired(detector, T0 + 62, tracker) == []
    assert [d["status"] for d in fired(detector, T0 + 73, tracker)] == ["resolved"]


def test_all_callers_together_when_not_per_service() -> None:
    detector = DependencyFailureDetector(DependencyFailureConfig(per_service=False))
    batches = [traces(resource(f"caller-{n}", [call("peer.service", "vector-db", T0 + n, error=True,
                                                     **{"error.type": "TimeoutError"}) for _ in range(2)]))
               for n in range(2)]
    observe_all(detector, batches)
    (obs,) = firing(detector.evaluate(T0 + 3))
    assert obs.subject == {"dependency": "vector-db"} and obs.observed == 4

"""health_snapshot: per-interval error rate, p95 latency, memory and span count for canary and
baseline subjects, emitted directly (status `snapshot`)."""
from __future__ import annotations

import random

import pytest

from connectors.triggers.detectors.memory_leak import MemoryLeakConfig, MemoryLeakDetector
from connectors.triggers.detectors.health_snapshot import HealthSnapshotConfig, HealthSnapshotDetector
from connectors.triggers.event import SCHEMA
from testkit.trigger_helpers import CLIENT, SERVER, T0, gauge, metrics, new_span_id, observe_all, resource, span, traces


def requests(count: int, errors: int, seconds: float, t: float = T0) -> list:
    """`count` server spans of `seconds` each (the first `errors` failed), each with a client child."""
    out = []
    for i in range(count):
        root = new_span_id()
        out.append(span("POST /chat", span_id=root, start=t, duration=seconds, kind=SERVER, error=i < errors))
        out.append(span("chat gpt-4o", parent=root, start=t, duration=seconds * 10, kind=CLIENT))  # ignored for p95
    return out


def by_canary(docs: list[dict]) -> dict[bool, dict]:
    return {doc["subject"]["canary"]: doc for doc in docs}


def test_defaults() -> None:
    assert HealthSnapshotConfig().snapshot_interval == 30.0


def test_canary_and_baseline_get_one_snapshot_each_per_interval() -> None:
    detector = HealthSnapshotDetector(HealthSnapshotConfig())
    baseline = resource("chat-api", requests(100, 2, 0.2), **{"service.version": "1.0"})
    canary = resource("chat-api", requests(50, 5, 0.4), **{"service.version": "1.1", "deployment.canary": True})
    observe_all(detector, [traces(baseline, canary, received_at=T0 + 1)])
    assert detector.emit(T0 + 20, "triggers") == []  # the interval is not over
    docs = by_canary(detector.emit(T0 + 31, "triggers"))
    base, new = docs[False], docs[True]
    assert (new["schema"], new["kind"], new["status"], new["severity"], new["detector"]) == (
        SCHEMA, "health_snapshot", "snapshot", "info", "triggers")
    assert new["subject"] == {"service": "chat-api", "service_version": "1.1", "canary": True}
    assert base["subject"] == {"service": "chat-api", "service_version": "1.0", "canary": False}
    assert new["metrics"] == {"error_rate": pytest.approx(5 / 100), "latency_p95_s": pytest.approx(0.4),
                              "memory_bytes": None, "spans": 100}
    assert base["metrics"]["error_rate"] == pytest.approx(2 / 200) and base["metrics"]["latency_p95_s"] == pytest.approx(0.2)
    assert new["episode"] != base["episode"] and new["subject_key"] == "service=chat-api,service_version=1.1,canary=true"
    assert detector.emit(T0 + 62, "triggers") == []  # no spans in the next interval: no snapshot


def test_canary_marked_with_a_string_and_unmarked_services_are_ignored() -> None:
    detector = HealthSnapshotDetector(HealthSnapshotConfig(snapshot_interval=10))
    observe_all(detector, [traces(resource("a", requests(3, 0, 0.1), **{"deployment.canary": "true"}),
                                  resource("plain", requests(30, 3, 0.1)), received_at=T0)])
    (doc,) = detector.emit(T0 + 11, "triggers")
    assert doc["subject"] == {"service": "a", "canary": True}


def test_p95_from_a_bounded_reservoir() -> None:
    detector = HealthSnapshotDetector(HealthSnapshotConfig(reservoir_size=512))
    rng = random.Random(9)
    durations = [rng.uniform(0.01, 1.0) for _ in range(20_000)]
    spans = [span("GET /", start=T0, duration=d, kind=SERVER) for d in durations]
    observe_all(detector, [traces(resource("api", spans[i:i + 1000], **{"service.version": "2"}), received_at=T0)
                           for i in range(0, len(spans), 1000)])
    interval = detector.intervals[("api", "2", False)]
    assert len(interval.durations) == 512 and interval.seen == 20_000
    (doc,) = detector.emit(T0 + 31, "triggers")
    true_p95 = sorted(durations)[int(0.95 * len(durations))]
    assert doc["metrics"]["latency_p95_s"] == pytest.approx(true_p95, abs=0.03)
    assert doc["metrics"]["spans"] == 20_000


def test_memory_comes_from_the_memory_detector() -> None:
    memory = MemoryLeakDetector(MemoryLeakConfig())
    detector = HealthSnapshotDetector(HealthSnapshotConfig())
    detector.attach({"memory_leak": memory, "health_snapshot": detector})
    attrs = {"service.version": "1.1", "deployment.canary": True, "service.instance.id": "canary-0"}
    observe_all(memory, [metrics("chat-api", gauge("process.memory.usage", [(T0, 1_200_000_000)]), received_at=T0,
                                 **{"service.instance.id": "canary-0"})])
    observe_all(detector, [traces(resource("chat-api", requests(5, 0, 0.1), **attrs), received_at=T0)])
    (doc,) = detector.emit(T0 + 31, "triggers")
    assert doc["metrics"]["memory_bytes"] == 1_200_000_000

"""memory_leak: least-squares growth of memory readings from OTLP metrics and span/resource
attributes, per process, reported per service (+ version)."""
from __future__ import annotations

import random

import pytest

from connectors.triggers.detectors.memory_leak import MemoryLeakConfig, MemoryLeakDetector
from testkit.trigger_helpers import T0, fired, firing, gauge, metrics, observe_all, resource, span, sum_metric, traces

MB = 1_000_000


def minute_readings(start_bytes: float, per_minute: float, minutes: int = 30, noise: float = 0.0,
                    seed: int = 1) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(T0 + 60 * m, start_bytes + per_minute * m + rng.uniform(-noise, noise)) for m in range(minutes + 1)]


def feed_gauge(detector: MemoryLeakDetector, service: str, name: str, readings: list, unit: str = "By",
               **resource_attrs) -> None:
    """One OTLP export per reading, received when it was taken (as a periodic reader sends)."""
    observe_all(detector, [metrics(service, gauge(name, [reading], unit), received_at=reading[0], **resource_attrs)
                           for reading in readings])


def test_defaults_are_the_product_ones() -> None:
    config = MemoryLeakConfig()
    assert (config.growth_per_hour, config.window, config.min_points, config.min_span, config.severity) == (
        50 * MB, 1800.0, 5, 300.0, "critical")
    assert MemoryLeakConfig(growth_per_hour="20MiB", window="10m").growth_per_hour == 20 * 1024 * 1024


def test_steady_growth_from_process_memory_usage_fires_with_its_slope() -> None:
    detector = MemoryLeakDetector(MemoryLeakConfig())
    feed_gauge(detector, "agent-a", "process.memory.usage", minute_readings(400 * MB, 2 * MB, noise=1 * MB),
               **{"service.version": "1.4", "service.instance.id": "pod-7"})
    docs = fired(detector, T0 + 1801)
    assert len(docs) == 1
    doc = docs[0]
    assert (doc["kind"], doc["status"], doc["severity"], doc["unit"]) == (
        "memory_leak", "firing", "critical", "bytes_per_hour")
    assert doc["subject"] == {"service": "agent-a", "service_version": "1.4"}
    assert doc["observed"] == pytest.approx(120 * MB, rel=0.03)
    assert doc["threshold"] == 50 * MB
    assert "pod-7" in doc["message"] and "process.memory.usage" in doc["message"]


def test_noisy_flat_memory_with_gc_sawtooth_does_not_fire() -> None:
    detector = MemoryLeakDetector(MemoryLeakConfig())
    # 600 MB ± 40 MB of noise plus a garbage-collection sawtooth (grows 30 MB, drops back).
    readings = [(t, v + 6 * MB * (m % 5)) for m, (t, v) in enumerate(minute_readings(600 * MB, 0, noise=40 * MB))]
    feed_gauge(detector, "agent-b", "process.memory.usage", readings)
    observations = detector.evaluate(T0 + 1801)
    assert [o.subject for o in observations] == [{"service": "agent-b"}]  # judged ...
    assert firing(observations) == [] and fired(detector, T0 + 1801) == []  # ... and healthy


def test_too_few_points_or_too_short_a_span_is_not_judged() -> None:
    detector = MemoryLeakDetector(MemoryLeakConfig())
    feed_gauge(detector, "agent-c", "process.memory.usage", minute_readings(100 * MB, 500 * MB, minutes=3))
    assert detector.evaluate(T0 + 200) == []  # 4 readings, 3 minutes: under min_points and min_span


def test_jvm_pools_are_summed_per_timestamp() -> None:
    detector = MemoryLeakDetector(MemoryLeakConfig())
    for t, heap in minute_readings(200 * MB, 3 * MB, minutes=20):
        points = [(t, heap, {"jvm.memory.pool.name": "G1 Old Gen", "jvm.memory.type": "heap"}),
                  (t, 50.0 * MB, {"jvm.memory.pool.name": "Metaspace", "jvm.memory.type": "non_heap"})]
        observe_all(detector, [metrics("billing", sum_metric("jvm.memory.used", points), received_at=t)])
    (obs,) = detector.evaluate(T0 + 1201)
    assert obs.observed == pytest.approx(180 * MB, rel=0.01)
    assert detector.latest_bytes("billing", "", set()) == pytest.approx((200 + 60 + 50) * MB)


def test_only_used_memory_counts_in_state_split_metrics() -> None:
    detector = MemoryLeakDetector(MemoryLeakConfig())
    for t, used in minute_readings(2000 * MB, 4 * MB, minutes=20):
        points = [(t, int(used), {"system.memory.state": "used"}),
                  (t, int(8000 * MB - used), {"system.memory.state": "free"})]  # the total stays flat
        observe_all(detector, [metrics("host-agent", sum_metric("system.memory.usage", points), received_at=t)])
    (obs,) = firing(detector.evaluate(T0 + 1201))
    assert obs.observed == pytest.approx(240 * MB, rel=0.01)


def test_cpython_vms_growth_is_not_rss_growth() -> None:
    detector = MemoryLeakDetector(MemoryLeakConfig())
    for t, vms in minute_readings(900 * MB, 50 * MB, minutes=20):
        points = [(t, vms, {"type": "vms"}), (t, 300.0 * MB, {"type": "rss"})]
        observe_all(detector, [metrics("py-agent", sum_metric("process.runtime.cpython.memory", points),
                                       received_at=t)])
    assert firing(detector.evaluate(T0 + 1201)) == []


def test_monotonic_counters_and_non_byte_units_are_ignored() -> None:
    detector = MemoryLeakDetector(MemoryLeakConfig())
    for t, total in minute_readings(1000 * MB, 100 * MB, minutes=20):
        observe_all(detector, [metrics("go-agent",
                                       sum_metric("runtime.go.mem.total_alloc", [(t, total)], monotonic=True),
                                       gauge("runtime.go.mem.lookups", [(t, total)], unit="{lookup}"),
                                       received_at=t)])
    assert detector.evaluate(T0 + 1201) == []


def test_readings_from_span_attributes_and_worst_instance_wins() -> None:
    detector = MemoryLeakDetector(MemoryLeakConfig())
    batches = []
    for m in range(12):
        t = T0 + 60 * m
        leaking = resource("planner", [span("invoke_agent", start=t, attrs={"process.memory.usage": 300 * MB + m * 5 * MB}),
                                       span("chat", start=t + 1, attrs={"process.memory.usage": 300 * MB + m * 5 * MB})],
                           **{"service.instance.id": "worker-1"})
        steady = resource("planner", [span("invoke_agent", start=t, attrs={"process.memory.usage": 280 * MB + (m % 2) * MB})],
                          **{"service.instance.id": "worker-2"})
        batches.append(traces(leaking, steady, received_at=t + 2))
    observe_all(detector, batches)
    (obs,) = detector.evaluate(T0 + 720)
    assert obs.subject == {"service": "planner"}
    assert obs.observed == pytest.approx(300 * MB, rel=0.01)
    assert "worker-1" in obs.message
    assert obs.examples.document()["trace_ids"]


def test_readings_from_resource_attributes() -> None:
    detector = MemoryLeakDetector(MemoryLeakConfig())
    for m in range(10):
        batch = traces(resource("ingest", [span("GET /")], **{"process.runtime.memory.rss": 100 * MB + m * 10 * MB}),
                       received_at=T0 + 60 * m)
        observe_all(detector, [batch])
    (obs,) = firing(detector.evaluate(T0 + 541))
    assert obs.observed == pytest.approx(600 * MB, rel=0.01)


def test_old_readings_leave_the_window_and_silent_series_are_dropped() -> None:
    detector = MemoryLeakDetector(MemoryLeakConfig(window=600, min_span=120))
    # A leak long ago, then flat memory: the leak leaves the 10-minute window.
    readings = minute_readings(100 * MB, 20 * MB, minutes=10)
    readings += [(T0 + 60 * m, 300.0 * MB) for m in range(11, 30)]
    feed_gauge(detector, "agent-d", "process.memory.usage", readings)
    assert firing(detector.evaluate(T0 + 29 * 60)) == []
    assert detector.evaluate(T0 + 29 * 60 + 601) == [] and detector.series == {}


def test_override_raises_the_threshold_for_one_service() -> None:
    config = MemoryLeakConfig(overrides=[{"match": {"service": "cache"}, "threshold": 500 * MB}])
    detector = MemoryLeakDetector(config)
    feed_gauge(detector, "cache", "process.memory.usage", minute_readings(1000 * MB, 3 * MB))
    (obs,) = detector.evaluate(T0 + 1801)
    assert obs.threshold == 500 * MB and firing([obs]) == []

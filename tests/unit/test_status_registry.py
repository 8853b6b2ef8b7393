"""Component status and the health rule on a paused clock (issue 9, point 9)."""
from __future__ import annotations

from pipeline.component import ComponentID, Kind, Signal
from pipeline.status import HealthRule, Status, StatusRegistry, instance_key


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


RECEIVER = instance_key(Kind.RECEIVER, ComponentID("otlp"))
TEMPO = instance_key(Kind.EXPORTER, ComponentID("otlp", "tempo"), Signal.TRACES)
KAFKA = instance_key(Kind.EXPORTER, ComponentID("kafka"), Signal.TRACES)


def running(clock: Clock) -> StatusRegistry:
    registry = StatusRegistry(clock)
    registry.track({"traces": [RECEIVER, TEMPO, KAFKA]})
    registry.set_all(Status.OK, only=Status.STARTING)
    return registry


def test_recoverable_error_counts_after_recovery_duration_and_clears_on_ok():
    clock = Clock()
    registry = running(clock)
    rule = HealthRule(include_recoverable_errors=True, recovery_duration=60.0)
    tempo = registry.reporter(Kind.EXPORTER, ComponentID("otlp", "tempo"), Signal.TRACES)
    tempo.recoverable_error("connection refused")
    began = clock.now
    for _ in range(10):  # a retry every 5 s: the same run of errors, `since` does not move
        clock.now += 5.0
        tempo.recoverable_error("connection refused again")
        assert registry.healthy(rule)
    clock.now = began + 60.0
    assert not registry.healthy(rule)
    view = registry.report(rule, verbose=True)["components"]["pipeline:traces"]
    assert view["status"] == "StatusRecoverableError" and view["healthy"] is False
    exporter = view["components"]["exporter:otlp/tempo"]
    assert exporter["error"] == "connection refused again"
    assert exporter["status_time"] == "2023-11-14T22:13:20Z"       # when the errors began
    assert exporter["error_time"] == "2023-11-14T22:14:10Z"        # the last one, 50 s later
    assert view["components"]["exporter:kafka"] == {"healthy": True, "status": "StatusOK",
                                                    "status_time": "2023-11-14T22:13:20Z"}
    tempo.ok()
    assert registry.healthy(rule)
    assert registry.report(rule)["status"] == "StatusOK"


def test_the_rule_decides_which_errors_count():
    clock = Clock()
    registry = running(clock)
    registry.reporter(Kind.EXPORTER, ComponentID("kafka"), Signal.TRACES).permanent_error("unknown topic")
    registry.reporter(Kind.EXPORTER, ComponentID("otlp", "tempo"), Signal.TRACES).recoverable_error("timeout")
    clock.now += 3600
    assert registry.healthy(HealthRule(False, False))
    assert not registry.healthy(HealthRule(include_permanent_errors=True, include_recoverable_errors=False))
    assert not registry.healthy(HealthRule(include_permanent_errors=False, include_recoverable_errors=True))
    # Permanent errors rank before recoverable ones, as otelcol aggregates them.
    assert registry.report(HealthRule())["status"] == "StatusPermanentError"


def test_lifecycle_and_reload():
    clock = Clock()
    registry = StatusRegistry(clock)
    registry.track({"traces": [RECEIVER, TEMPO]})
    assert registry.report(HealthRule())["status"] == "StatusStarting"
    assert not registry.healthy(HealthRule())
    registry.reporter(Kind.EXPORTER, ComponentID("otlp", "tempo"), Signal.TRACES).recoverable_error("down")
    registry.set_all(Status.OK, only=Status.STARTING)  # started: what an exporter said stays
    assert registry.events[TEMPO].status == Status.RECOVERABLE_ERROR
    assert registry.events[RECEIVER].status == Status.OK
    registry.track({"traces": [RECEIVER, KAFKA]})   # reload: tempo gone, kafka new, otlp reused
    assert set(registry.events) == {RECEIVER, KAFKA}
    assert registry.events[KAFKA].status == Status.STARTING and registry.events[RECEIVER].status == Status.OK
    registry.set_all(Status.STOPPING)
    assert registry.report(HealthRule())["status"] == "StatusStopping"

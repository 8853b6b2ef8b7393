"""infinite_loop: repeated identical tool calls per session, and sustained CPU from OTLP metrics."""
from __future__ import annotations

import random

import pytest

from connectors.triggers.detectors.infinite_loop import InfiniteLoopConfig, InfiniteLoopDetector
from connectors.triggers.episodes import EpisodeTracker
from testkit.trigger_helpers import (
    T0,
    fired,
    firing,
    gauge,
    metrics,
    observe_all,
    resource,
    span,
    sum_metric,
    trace_id,
    traces,
)


def tool_span(tool: str, args: str | None, t: float, trace: int = 1, **attrs):
    values = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool, "gen_ai.agent.name": "researcher",
              **attrs}
    if args is not None:
        values["gen_ai.tool.call.arguments"] = args
    return span(f"execute_tool {tool}", trace=trace, start=t, duration=0.05, attrs=values)


def test_defaults_are_the_product_ones() -> None:
    config = InfiniteLoopConfig()
    assert (config.repeat_threshold, config.cpu_threshold, config.cpu_sustain) == (5, 0.9, 30.0)


def test_same_tool_same_arguments_in_one_trace_fires_with_the_count() -> None:
    detector = InfiniteLoopDetector(InfiniteLoopConfig())
    spans = [tool_span("search_web", '{"q": "weather in Paris"}', T0 + i, trace=7) for i in range(6)]
    spans.append(tool_span("search_web", '{"q": "weather in Rome"}', T0 + 7, trace=7))
    observe_all(detector, [traces(resource("research-agent", spans[:3]), received_at=T0 + 3),
                           traces(resource("research-agent", spans[3:]), received_at=T0 + 8)])
    (doc,) = fired(detector, T0 + 9)
    assert (doc["kind"], doc["unit"], doc["observed"], doc["threshold"]) == ("infinite_loop", "count", 6, 5)
    assert doc["subject"] == {"service": "research-agent", "agent": "researcher", "tool": "search_web",
                              "session": trace_id(7).hex()}
    assert doc["examples"]["trace_ids"] == [trace_id(7).hex()]


def test_a_conversation_spans_traces() -> None:
    detector = InfiniteLoopDetector(InfiniteLoopConfig())
    spans = [tool_span("read_file", '{"path": "/etc/hosts"}', T0 + i, trace=100 + i,
                       **{"gen_ai.conversation.id": "conv-42"}) for i in range(5)]
    observe_all(detector, [traces(resource("coder", spans), received_at=T0 + 5)])
    (obs,) = firing(detector.evaluate(T0 + 6))
    assert obs.subject["session"] == "conv-42" and obs.observed == 5


def test_busy_but_healthy_tool_use_does_not_fire() -> None:
    detector = InfiniteLoopDetector(InfiniteLoopConfig())
    rng = random.Random(3)
    spans = [tool_span("search_web", f'{{"q": "{rng.randrange(10**6)}"}}', T0 + i * 0.1, trace=1) for i in range(200)]
    spans += [tool_span("fetch_url", '{"url": "https://example.com"}', T0 + i, trace=1) for i in range(4)]  # 4 < 5
    spans += [tool_span("fetch_url", '{"url": "https://example.com"}', T0 + i, trace=10 + i) for i in range(8)]
    spans += [tool_span("get_time", None, T0 + i, trace=1) for i in range(20)]  # no arguments recorded
    observe_all(detector, [traces(resource("research-agent", spans), received_at=T0 + 20)])
    assert detector.evaluate(T0 + 21) == []


def test_calls_without_arguments_count_when_asked() -> None:
    detector = InfiniteLoopDetector(InfiniteLoopConfig(require_arguments=False))
    observe_all(detector, [traces(resource("clock", [tool_span("get_time", None, T0 + i) for i in range(5)]))])
    assert firing(detector.evaluate(T0 + 1))[0].observed == 5


def test_openinference_tool_name_and_input_value() -> None:
    detector = InfiniteLoopDetector(InfiniteLoopConfig())
    spans = [span("tool", start=T0 + i, attrs={"openinference.span.kind": "TOOL", "tool.name": "sql",
                                                "input.value": "SELECT 1", "session.id": "s"}) for i in range(5)]
    observe_all(detector, [traces(resource("phoenix-agent", spans))])
    (obs,) = firing(detector.evaluate(T0 + 6))
    assert obs.subject["tool"] == "sql" and obs.subject["agent"] == "phoenix-agent"


def test_repeats_leave_the_window_and_the_episode_resolves() -> None:
    detector = InfiniteLoopDetector(InfiniteLoopConfig(window=60))
    tracker = EpisodeTracker("triggers", resolve_after=10, resolve_ratio=0.8)
    observe_all(detector, [traces(resource("a", [tool_span("t", "x", T0 + i) for i in range(5)]), received_at=T0)])
    assert [d["status"] for d in fired(detector, T0 + 1, tracker)] == ["firing"]
    assert fired(detector, T0 + 30, tracker) == []
    assert fired(detector, T0 + 62, tracker) == []  # the calls left the window: quiet from here
    assert [d["status"] for d in fired(detector, T0 + 73, tracker)] == ["resolved"]


def test_override_of_the_repeat_count_for_one_tool() -> None:
    config = InfiniteLoopConfig(overrides=[{"match": {"tool": "poll_status"}, "threshold": 20}])
    detector = InfiniteLoopDetector(config)
    spans = [tool_span("poll_status", '{"job": 1}', T0 + i) for i in range(10)]
    spans += [tool_span("search", '{"q": 1}', T0 + i) for i in range(5)]
    observe_all(detector, [traces(resource("a", spans))])
    assert [o.subject["tool"] for o in firing(detector.evaluate(T0 + 11))] == ["search"]


# -- CPU ---------------------------------------------------------------------------------------------
def feed(detector: InfiniteLoopDetector, service: str, metric_of_t, seconds: int, step: int = 5,
         **resource_attrs) -> None:
    for s in range(0, seconds + 1, step):
        t = T0 + s
        observe_all(detector, [metrics(service, metric_of_t(t, s), received_at=t, **resource_attrs)])


def test_cpu_above_90_percent_for_30_seconds_fires() -> None:
    detector = InfiniteLoopDetector(InfiniteLoopConfig())
    feed(detector, "looping-agent", lambda t, s: gauge("process.cpu.utilization", [(t, 0.97)], unit="1"), 40)
    (doc,) = fired(detector, T0 + 41)
    assert (doc["kind"], doc["subject"], doc["unit"], doc["threshold"]) == (
        "infinite_loop", {"service": "looping-agent"}, "ratio", 0.9)
    assert doc["observed"] == pytest.approx(0.97)


def test_cpu_under_30_seconds_or_with_dips_does_not_fire() -> None:
    detector = InfiniteLoopDetector(InfiniteLoopConfig())
    rng = random.Random(5)
    # Bursts of 95 % for 25 s, then a dip; noise between bursts.
    values = [0.95 if (s % 40) < 26 else rng.uniform(0.2, 0.85) for s in range(0, 300, 5)]
    feed(detector, "bursty-agent", lambda t, s: gauge("process.cpu.utilization", [(t, values[s // 5])], unit="1"), 295)
    assert firing(detector.evaluate(T0 + 296)) == []


def test_cpu_time_counter_as_a_rate() -> None:
    detector = InfiniteLoopDetector(InfiniteLoopConfig())

    def cpu_time(t: float, s: int):
        return sum_metric("process.cpu.time", [(t, 0.8 * s, {"cpu.mode": "user"}), (t, 0.15 * s, {"cpu.mode": "system"})],
                          unit="s", monotonic=True, start=T0 - 100)
    feed(detector, "spinner", cpu_time, 45)
    (obs,) = firing(detector.evaluate(T0 + 46))
    assert obs.observed == pytest.approx(0.95)


def test_cpu_time_delta_temporality_and_cores() -> None:
    detector = InfiniteLoopDetector(InfiniteLoopConfig(cpu_time_cores=4))
    for s in range(0, 50, 5):
        t = T0 + s
        metric = sum_metric("process.cpu.time", [(t, 5 * 3.0)], unit="s", monotonic=True, delta=True, start=t - 5)
        observe_all(detector, [metrics("parallel", metric, received_at=t)])
    (obs,) = detector.evaluate(T0 + 50)
    assert obs.observed == pytest.approx(0.75) and firing([obs]) == []  # 3 of 4 cores busy


def test_system_cpu_utilization_averages_cores_without_idle() -> None:
    detector = InfiniteLoopDetector(InfiniteLoopConfig())

    def per_core(busy_second_core: float):
        def build(t: float, s: int):
            points = []
            for core, busy in (("0", 0.96), ("1", busy_second_core)):
                points += [(t, busy * 0.8, {"cpu": core, "state": "user"}), (t, busy * 0.2, {"cpu": core, "state": "system"}),
                           (t, 1 - busy, {"cpu": core, "state": "idle"})]
            return gauge("system.cpu.utilization", points, unit="1")
        return build
    feed(detector, "host-a", per_core(0.94), 40)
    feed(detector, "host-b", per_core(0.10), 40)
    by_service = {o.subject["service"]: o for o in detector.evaluate(T0 + 41)}
    assert by_service["host-a"].observed == pytest.approx(0.95) and by_service["host-a"].firing
    assert by_service["host-b"].observed == pytest.approx(0.53) and not by_service["host-b"].firing


def test_silent_processes_are_forgotten() -> None:
    detector = InfiniteLoopDetector(InfiniteLoopConfig(cpu_stale_after=60))
    feed(detector, "gone", lambda t, s: gauge("process.cpu.utilization", [(t, 0.99)], unit="1"), 40)
    assert firing(detector.evaluate(T0 + 41))
    assert detector.evaluate(T0 + 40 + 61) == []


def test_distinct_calls_beyond_max_tracked_are_dropped_and_counted() -> None:
    detector = InfiniteLoopDetector(InfiniteLoopConfig(max_tracked=10))
    observe_all(detector, [traces(resource("a", [tool_span("t", f"{i}", T0) for i in range(15)]))])
    assert len(detector.tool_calls.calls.totals) == 10 and detector.drops == {"call_untracked": 5}


def test_a_reload_keeps_both_halves_counting_under_the_new_config() -> None:
    """The detector routes to two halves (tool calls, CPU): a reload hands each its own state
    and gives it the new thresholds, and evictions of both still reach the connector."""
    old = InfiniteLoopDetector(InfiniteLoopConfig(max_tracked=6))
    observe_all(old, [traces(resource("a", [tool_span("t", "x", T0 + i) for i in range(4)]), received_at=T0 + 4)])
    feed(old, "spinner", lambda t, s: gauge("process.cpu.utilization", [(t, 0.97)], unit="1"), 20)
    new = InfiniteLoopDetector(InfiniteLoopConfig(repeat_threshold=6, cpu_threshold=0.95, max_tracked=6,
                                                  max_subjects=1))
    new.take_state_from(old)
    observe_all(new, [traces(resource("a", [tool_span("t", "x", T0 + 21), tool_span("t", "x", T0 + 22)]),
                             received_at=T0 + 22)])
    feed(new, "spinner", lambda t, s: gauge("process.cpu.utilization", [(t, 0.97)], unit="1"), 40)
    by_kind = {o.unit: o for o in firing(new.evaluate(T0 + 41))}
    assert (by_kind["count"].observed, by_kind["count"].threshold) == (6, 6)  # 4 before the reload + 2 after
    assert (by_kind["ratio"].subject, by_kind["ratio"].threshold) == ({"service": "spinner"}, 0.95)
    observe_all(new, [traces(resource("a", [tool_span("t", f"{i}", T0 + 42) for i in range(8)]), received_at=T0 + 42)])
    observe_all(new, [metrics("other", gauge("process.cpu.utilization", [(T0 + 42, 0.5)], unit="1"),
                              received_at=T0 + 42)])
    # the oldest bucket (the first call) is let go of, 6 of the 8 new calls fit; a 2nd process does not
    assert new.drops == {"window_shortened": 1, "call_untracked": 2, "subject_untracked": 1}

"""deadlock: an agent span's own time (duration minus its children's union) over 10 s, judged
once its trace has been quiet for decision_wait."""
from __future__ import annotations

import random

import pytest

from connectors.triggers.detectors.deadlock import DeadlockConfig, DeadlockDetector, covered
from testkit.trigger_helpers import (CLIENT, INTERNAL, SERVER, T0, fired, firing, new_span_id, observe_all,
                                   resource, span, traces)
from testkit.trigger_helpers import trace_id as trace_id_bytes

AGENT = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}


def agent_span(start: float, end: float, trace: int = 1, span_id: bytes | None = None, parent: bytes = b"",
               attrs=AGENT, kind: int = SERVER):
    return span("invoke_agent planner", trace=trace, span_id=span_id or new_span_id(), parent=parent, start=start,
                end=end, kind=kind, attrs=attrs)


def child(parent: bytes, start: float, end: float, trace: int = 1, name: str = "chat gpt-4o"):
    return span(name, trace=trace, parent=parent, start=start, end=end, kind=CLIENT)


def test_covered_is_the_clipped_union() -> None:
    assert covered([(5, 8), (0, 3), (2, 4), (7, 12)], 1, 10) == (4 - 1) + (10 - 5)
    assert covered([], 0, 10) == 0


def test_defaults_are_the_product_ones() -> None:
    config = DeadlockConfig()
    assert (config.blocked_limit, config.decision_wait, config.severity) == (10.0, 5.0, "critical")


def test_an_agent_blocked_for_11_seconds_fires_after_the_decision_wait() -> None:
    detector = DeadlockDetector(DeadlockConfig())
    root = new_span_id()
    spans = [child(root, T0 + 0.5, T0 + 1.5), agent_span(T0, T0 + 12, span_id=root)]
    observe_all(detector, [traces(resource("planner-svc", spans), received_at=T0 + 12.1)])
    assert detector.evaluate(T0 + 15) == []  # the trace may still be growing
    (doc,) = fired(detector, T0 + 17.2)
    assert (doc["kind"], doc["subject"], doc["unit"], doc["threshold"], doc["severity"]) == (
        "deadlock", {"service": "planner-svc", "agent": "planner"}, "seconds", 10.0, "critical")
    assert doc["observed"] == pytest.approx(11.0)
    assert doc["examples"]["span_ids"] == [root.hex()]


def test_children_arriving_before_and_after_the_agent_span_all_count() -> None:
    detector = DeadlockDetector(DeadlockConfig())
    root = new_span_id()
    observe_all(detector, [
        traces(resource("svc", [child(root, T0, T0 + 9)]), received_at=T0 + 9),
        traces(resource("svc", [agent_span(T0, T0 + 20, span_id=root)]), received_at=T0 + 20),
        traces(resource("svc", [child(root, T0 + 9, T0 + 18, name="execute_tool search")]), received_at=T0 + 23),
    ])
    assert detector.evaluate(T0 + 26) == []  # 5 s after the agent span, but not after the late child
    assert detector.evaluate(T0 + 28.5) == []  # judged now: own time 2 s
    assert detector.buffer == {}


def test_busy_long_agents_and_long_non_agent_spans_do_not_fire() -> None:
    detector = DeadlockDetector(DeadlockConfig())
    rng = random.Random(2)
    spans = []
    for trace in range(50):
        root, start = new_span_id(), T0 + trace
        length = rng.uniform(12, 60)
        cursor = start + 0.2
        while cursor < start + length - 0.5:  # sequential and parallel children cover the agent
            step = rng.uniform(0.5, 4)
            spans.append(child(root, cursor, min(cursor + step, start + length), trace=trace))
            spans.append(child(root, cursor + 0.1, cursor + step / 2, trace=trace, name="execute_tool x"))
            cursor += step - rng.uniform(0, 0.3)
        spans.append(agent_span(start, start + length, trace=trace, span_id=root))
    spans.append(span("GET /slow", trace=999, start=T0, end=T0 + 60, kind=CLIENT))  # long, not an agent
    spans.append(agent_span(T0, T0 + 9, trace=998))  # an agent alone, but under the limit
    spans.append(span("POST /jobs", trace=997, start=T0, end=T0 + 30, kind=SERVER))  # SERVER without an agent
    observe_all(detector, [traces(resource("busy", spans), received_at=T0 + 70)])
    assert detector.evaluate(T0 + 80) == []


def test_nested_agents_are_judged_each_on_its_own_time() -> None:
    detector = DeadlockDetector(DeadlockConfig())
    outer, inner = new_span_id(), new_span_id()
    worker = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "worker"}
    spans = [agent_span(T0 + 1, T0 + 29, parent=outer, span_id=inner, attrs=worker, kind=CLIENT),
             child(inner, T0 + 2, T0 + 5),
             agent_span(T0, T0 + 30, span_id=outer)]
    observe_all(detector, [traces(resource("crew", spans), received_at=T0 + 30)])
    (obs,) = detector.evaluate(T0 + 36)
    assert obs.subject == {"service": "crew", "agent": "worker"} and obs.observed == pytest.approx(25.0)


def test_server_span_with_an_agent_name_is_an_agent() -> None:
    detector = DeadlockDetector(DeadlockConfig())
    observe_all(detector, [traces(resource("adk", [agent_span(T0, T0 + 15, attrs={"gen_ai.agent.name": "root_agent"})]),
                                  received_at=T0 + 15)])
    (obs,) = firing(detector.evaluate(T0 + 21))
    assert obs.subject["agent"] == "root_agent"


def test_the_buffer_is_bounded_and_an_evicted_long_agent_is_still_judged() -> None:
    detector = DeadlockDetector(DeadlockConfig(max_traces=2))
    batches = [traces(resource("svc", [agent_span(T0, T0 + 15, trace=1)]), received_at=T0 + 15)]
    batches += [traces(resource("svc", [span("x", trace=t, start=T0)]), received_at=T0 + 15 + t) for t in (2, 3)]
    observe_all(detector, batches)
    assert detector.evicted == 1 and detector.drops == {"trace_evicted": 1} and len(detector.buffer) == 2
    (obs,) = detector.evaluate(T0 + 18.5)  # before its decision time: it was pushed out of the buffer
    assert obs.observed == pytest.approx(15.0)


def test_override_per_agent() -> None:
    config = DeadlockConfig(overrides=[{"match": {"agent": "planner"}, "threshold": 60}])
    detector = DeadlockDetector(config)
    observe_all(detector, [traces(resource("svc", [agent_span(T0, T0 + 30)]), received_at=T0 + 30)])
    assert detector.evaluate(T0 + 36) == []


def test_long_running_traces_are_compacted_out_of_their_batches() -> None:
    detector = DeadlockDetector(DeadlockConfig(compact_after=10))
    root = new_span_id()
    batches = [traces(resource("svc", [child(root, T0 + m * 2, T0 + m * 2 + 1.5), span("other", trace=50 + m)]),
                      received_at=T0 + m * 2 + 1.5) for m in range(10)]
    observe_all(detector, batches[:6])
    assert detector.evaluate(T0 + 12) == []  # trace 1 is 10 s old: its spans are copied out
    entry = detector.buffer[trace_id_bytes(1)]
    assert (len(entry.spans), entry.batches) == (6, [])
    observe_all(detector, batches[6:] + [traces(resource("svc", [agent_span(T0, T0 + 30, span_id=root)]),
                                                received_at=T0 + 30)])
    assert detector.evaluate(T0 + 31) == []
    (obs,) = detector.evaluate(T0 + 35.5)
    assert obs.observed == pytest.approx(30 - 10 * 1.5)  # every child counted, compacted or not


def test_children_that_arrived_long_before_the_agent_span_still_count() -> None:
    """Children are exported as they end: a 6 s tool call leaves the trace quiet for longer than
    decision_wait before its agent span arrives; the 11 s LLM call that came before must still
    count (found by the scenario suite: healthy agents looked blocked for that long)."""
    detector = DeadlockDetector(DeadlockConfig())
    root = new_span_id()
    observe_all(detector, [traces(resource("coder", [child(root, T0, T0 + 11)]), received_at=T0 + 11)])
    assert detector.evaluate(T0 + 17) == []  # quiet for 6 s without its root: still running, kept aside
    observe_all(detector, [traces(resource("coder", [child(root, T0 + 11, T0 + 17, name="execute_tool run_tests"),
                                                     agent_span(T0, T0 + 17.5, span_id=root)]), received_at=T0 + 17.5)])
    assert detector.evaluate(T0 + 23) == []  # own time 0.5 s, not 11.5 s
    assert detector.buffer == {} and detector.waiting == {}


def test_a_trace_judged_before_its_root_arrived_keeps_its_spans_for_the_root() -> None:
    detector = DeadlockDetector(DeadlockConfig())
    outer, worker = new_span_id(), new_span_id()
    worker_attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "worker"}
    observe_all(detector, [traces(resource("crew", [
        child(worker, T0 + 0.2, T0 + 11.9),
        agent_span(T0 + 0.1, T0 + 12, parent=outer, span_id=worker, attrs=worker_attrs, kind=INTERNAL)]),
        received_at=T0 + 12)])
    assert detector.evaluate(T0 + 18) == []  # the worker is judged (busy) and its trace waits for the root
    observe_all(detector, [traces(resource("crew", [child(outer, T0 + 12.1, T0 + 24),
                                                    agent_span(T0, T0 + 24.2, span_id=outer)]), received_at=T0 + 24.2)])
    assert detector.evaluate(T0 + 30) == []  # the root's children include the worker: own time 0.4 s

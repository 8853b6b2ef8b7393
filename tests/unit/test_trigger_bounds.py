"""Every detector's state is bounded, and what it lets go of is counted.

In process, with the clock given by each batch's `received_at` and each evaluation's `now`.
Each test drives a detector past one bound with a small limit and checks that the state
stays at the bound, that the eviction is counted by reason (what the connector turns into
agentdbg_trigger_state_evictions_total), and that what was kept still works."""
from __future__ import annotations

import asyncio

from connectors.triggers import TriggersConnector
from connectors.triggers.config import TriggersConfig
from connectors.triggers.detectors.context_overflow import ContextOverflowConfig, ContextOverflowDetector
from connectors.triggers.detectors.cost_budget import CostBudgetConfig, CostBudgetDetector
from connectors.triggers.detectors.deadlock import DeadlockConfig, DeadlockDetector
from connectors.triggers.detectors.dependency_failure import DependencyFailureConfig, DependencyFailureDetector
from connectors.triggers.detectors.error_rate_spike import ErrorRateSpikeConfig, ErrorRateSpikeDetector
from connectors.triggers.detectors.health_snapshot import HealthSnapshotConfig, HealthSnapshotDetector
from connectors.triggers.detectors.infinite_loop import InfiniteLoopConfig, InfiniteLoopDetector
from connectors.triggers.detectors.memory_leak import MemoryLeakConfig, MemoryLeakDetector
from connectors.triggers.detectors.performance_degradation import PerformanceDegradationConfig, PerformanceDegradationDetector
from pipeline.component import ComponentID, Kind, Settings
from pipeline.telemetry.metrics import REGISTRY
from testkit.trigger_helpers import CLIENT, SERVER, T0, gauge, metrics, new_span_id, observe_all, resource, span, traces


def test_latency_subjects_and_baselines_stay_under_max_subjects() -> None:
    detector = PerformanceDegradationDetector(PerformanceDegradationConfig(max_subjects=3, window=10))
    names = [f"GET /users/{n}" for n in range(5)]  # ids in span names: never repeated
    observe_all(detector, [traces(resource("api", [span(name, kind=SERVER, start=T0) for name in names]))])
    assert len(detector.window.totals) == 3 and detector.drops == {"subject_untracked": 2}
    detector.evaluate(T0 + 1)
    assert len(detector.baselines) == 3 and len(detector.slowest) == 3
    # The first subjects leave the window; new ones come: baselines keep the 3 most recent.
    later = [f"GET /orders/{n}" for n in range(3)]
    detector.evaluate(T0 + 29)  # the window has moved on: the first subjects are out of it
    observe_all(detector, [traces(resource("api", [span(n, kind=SERVER, start=T0 + 30) for n in later]),
                                  received_at=T0 + 30)])
    detector.evaluate(T0 + 30.5)
    assert set(detector.baselines) == {("span", "api", n) for n in later}
    assert set(detector.slowest) == {("span", "api", n) for n in later}
    assert detector.drops == {"subject_untracked": 2, "baseline_evicted": 3}


def test_error_rate_services_past_the_bound_are_not_counted_and_examples_go_with_the_window() -> None:
    detector = ErrorRateSpikeDetector(ErrorRateSpikeConfig(max_subjects=2, window=60, min_count=1))
    spans = [resource(f"svc-{n}", [span("op", start=T0, error=True)]) for n in range(3)]
    observe_all(detector, [traces(*spans)])
    assert set(detector.sums.totals) == {"svc-0", "svc-1"} and set(detector.examples) == {"svc-0", "svc-1"}
    assert detector.drops == {"subject_untracked": 1}
    assert len(detector.sums.buckets) <= 60
    detector.evaluate(T0 + 120)
    assert detector.sums.totals == {} and detector.examples == {}


def test_dependency_pairs_past_the_bound_are_not_counted() -> None:
    detector = DependencyFailureDetector(DependencyFailureConfig(max_subjects=2))
    calls = [span("GET", kind=CLIENT, start=T0, error=True,
                  attrs={"peer.service": f"dep-{n}", "error.type": "TimeoutError"}) for n in range(4)]
    observe_all(detector, [traces(resource("caller", calls))])
    assert len(detector.timeouts.totals) == 2 and detector.drops == {"subject_untracked": 2}


def tool_call(n: int, t: float):
    return span("execute_tool search", trace=n + 1, start=t, attrs={
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search", "gen_ai.tool.call.arguments": f"{n}"})


def test_infinite_loop_sheds_its_oldest_calls_to_keep_counting_new_ones() -> None:
    detector = InfiniteLoopDetector(InfiniteLoopConfig(max_tracked=10, window=600))
    observe_all(detector, [traces(resource("a", [tool_call(n, T0) for n in range(8)]), received_at=T0)])
    # 5 new distinct calls a minute later: the oldest bucket (8 calls) is let go of early.
    observe_all(detector, [traces(resource("a", [tool_call(100 + n, T0 + 60) for n in range(5)]),
                                  received_at=T0 + 60)])
    assert len(detector.tool_calls.calls.totals) == 5 and detector.drops == {"window_shortened": 8}
    # A loop among the new calls is still seen.
    observe_all(detector, [traces(resource("a", [tool_call(100, T0 + 61) for _ in range(5)]), received_at=T0 + 61)])
    (obs,) = detector.evaluate(T0 + 62)
    assert obs.observed == 6 and obs.firing


def agent(trace: int, start: float, end: float, span_id: bytes):
    return span("invoke_agent planner", trace=trace, span_id=span_id, start=start, end=end, kind=SERVER,
                attrs={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"})


def test_deadlock_compacted_spans_stay_under_max_spans() -> None:
    detector = DeadlockDetector(DeadlockConfig(max_spans=25, compact_after=1, decision_wait=1))
    # Four long-running traces whose root has not arrived: 10 children each, kept aside.
    children = [span("chat", trace=t, parent=b"\x01" * 8, start=T0) for t in range(1, 5) for _ in range(10)]
    observe_all(detector, [traces(resource("crew", children))])
    detector.evaluate(T0 + 2)
    assert detector.held <= 25 and detector.drops == {"span_limit": 2}
    assert len(detector.waiting) == 2


def test_deadlock_accounting_returns_to_zero_once_traces_are_decided() -> None:
    detector = DeadlockDetector(DeadlockConfig(compact_after=1, decision_wait=2))
    root = new_span_id()
    batch = [agent(1, T0, T0 + 15, root), span("chat", trace=1, parent=root, start=T0, end=T0 + 1)]
    observe_all(detector, [traces(resource("crew", batch), received_at=T0 + 15)])
    detector.evaluate(T0 + 16.5)  # compacted, not yet decided
    assert detector.held == 2
    (obs,) = detector.evaluate(T0 + 18)
    assert obs.observed == 14.0 and detector.held == 0 and not detector.buffer and not detector.waiting


def test_memory_series_past_the_bound_are_not_followed() -> None:
    detector = MemoryLeakDetector(MemoryLeakConfig(max_subjects=2))
    batches = [metrics("svc", gauge("process.memory.usage", [(T0, 1e8)]), **{"service.instance.id": f"i-{n}"})
               for n in range(3)]
    observe_all(detector, batches)
    assert len(detector.series) == 2 and detector.drops == {"series_untracked": 1}


def test_context_overflow_pending_subjects_are_bounded() -> None:
    detector = ContextOverflowDetector(ContextOverflowConfig(max_subjects=2, context_windows={"m": 1000}))
    calls = [span("chat m", start=T0, attrs={"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 950,
                                              "gen_ai.agent.name": f"agent-{n}"}) for n in range(3)]
    observe_all(detector, [traces(resource("svc", calls))])
    assert len(detector.pending) == 2 and detector.drops == {"subject_untracked": 1}
    assert len(detector.evaluate(T0 + 1)) == 2 and detector.pending == {}


def test_cost_keeps_the_biggest_spenders() -> None:
    detector = CostBudgetDetector(CostBudgetConfig(max_subjects=2, per_agent=False))
    spends = [resource(f"svc-{n}", [span("chat", start=T0, kind=CLIENT, attrs={"gen_ai.usage.cost": usd})])
              for n, usd in enumerate([0.5, 0.1, 2.0])]
    observe_all(detector, [traces(*spends)])
    detector.evaluate(T0 + 1)
    assert set(detector.spend) == {("service", "svc-0"), ("service", "svc-2")}
    assert set(detector.burn.totals) <= set(detector.spend) and set(detector.examples) <= set(detector.spend)
    assert detector.drops == {"subject_evicted": 1}


def test_health_snapshot_subjects_and_instances_are_bounded() -> None:
    detector = HealthSnapshotDetector(HealthSnapshotConfig(max_subjects=1, max_instances=2))
    batch = [resource("svc", [span("op", kind=SERVER)], **{"service.version": "1", "service.instance.id": f"i-{n}"})
             for n in range(3)]
    batch.append(resource("other", [span("op", kind=SERVER)], **{"service.version": "2"}))
    observe_all(detector, [traces(*batch)])
    (interval,) = detector.intervals.values()
    assert len(interval.instances) == 2 and interval.spans == 3
    assert detector.drops == {"instance_untracked": 1, "subject_untracked": 1}


def test_the_connector_counts_evictions_by_detector_and_reason() -> None:
    config = TriggersConfig.model_validate({"error_rate_spike": {"max_subjects": 1}})
    connector = TriggersConnector(Settings.make(Kind.CONNECTOR, ComponentID("triggers", "bounds")), config)
    labels = {"connector": "triggers/bounds", "detector": "error_rate_spike", "reason": "subject_untracked"}
    before = REGISTRY.get_sample_value("agentdbg_trigger_state_evictions_total", labels) or 0.0
    batch = traces(resource("a", [span("op")]), resource("b", [span("op")]), resource("c", [span("op")]))

    async def run() -> None:
        await connector.consume(batch)
        await connector._evaluate_once(flush=True)  # judged now, not once the watermark passes it

    asyncio.run(run())
    assert REGISTRY.get_sample_value("agentdbg_trigger_state_evictions_total", labels) == before + 2


def test_the_running_daemon_counts_evictions_on_its_metrics_endpoint() -> None:
    """What an operator sees: a daemon whose error-rate detector holds 2 services, sent 5."""
    import requests

    from testkit.harness import BASE_CONFIG, Daemon, wait_until
    from testkit.trigger_helpers import triggers_overlay

    overlay = triggers_overlay("      error_rate_spike: {max_subjects: 2}\n      evaluation_interval: 50ms")
    body = traces(*[resource(f"svc-{n}", [span("op", error=True)]) for n in range(5)]).wire()
    with Daemon(BASE_CONFIG, overlay=overlay) as daemon:
        answer = requests.post(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces", data=body, timeout=10,
                               headers={"Content-Type": "application/x-protobuf"})
        assert answer.status_code == 200
        wait_until(lambda: daemon.metric("agentdbg_trigger_state_evictions_total", detector="error_rate_spike",
                                         reason="subject_untracked") == 3, timeout=15,
                   message="3 services past the bound counted")


def test_latency_counts_the_good_spans_of_a_batch_that_holds_an_absurd_duration() -> None:
    """A span lasting 2^64-1 ns (a client's bad end time) beside good ones: before, numpy raised
    OverflowError and the detector skipped the whole batch."""
    detector = PerformanceDegradationDetector(PerformanceDegradationConfig())
    absurd = span("GET /broken", kind=SERVER, start=0)
    absurd.end_time_unix_nano = 2 ** 64 - 1
    good = [span("GET /ok", kind=SERVER, start=T0, duration=0.2) for _ in range(3)]
    observe_all(detector, [traces(resource("api", [absurd, *good]))])
    assert detector.window.totals[("span", "api", "GET /ok")][0] == 3

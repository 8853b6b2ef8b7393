"""Event time and checkpoints of the triggers connector, on a ManualClock (no sleeps).

The same batches give the same trigger events (kind, subject, status, episode id) whatever
order they arrive in within `allowed_lateness`; a batch later than that is counted and left
out of the windows; a connector restored from a checkpoint taken mid-episode goes on as the
one that never stopped, and resolves the episode with the same id."""
from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from typing import Any

from connectors.triggers import TriggersConnector
from connectors.triggers.checkpoint import Checkpointer, FileStore
from connectors.triggers.config import TriggersConfig
from evaluation.scenarios.faults import Fault, FaultyFleet
from pipeline.clock import ManualClock
from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.pdata.metrics import Metrics
from pipeline.pdata.traces import Traces
from pipeline.telemetry.metrics import REGISTRY
from processors.genai import GenAIConfig, GenAIProcessor
from testkit.trigger_helpers import CLIENT, T0, resource, span, traces

DURATION = 160
FAULT = Fault("dependency_timeout", "sql-agent", 40.0, 50.0, dependency="postgres")
# One evaluation per simulated second keeps the test short; the order of points is what matters.
CONFIG = TriggersConfig(allowed_lateness=5.0, resolve_after=20.0, evaluation_interval=1.0)
_SCENARIO: list[tuple[float, dict[int, list[Traces | Metrics]]]] = []


class Sink:
    """The genai processor's next consumer: keeps what it hands on."""

    def __init__(self) -> None:
        self.batches: list[Traces] = []

    async def consume(self, batch: Traces) -> None:
        self.batches.append(batch)


async def normalised_scenario() -> tuple[float, dict[int, list[Traces | Metrics]]]:
    """The scenario's batches per simulated second, through the real genai processor once (its
    session memory depends on order, the detectors' answers must not); made once per run."""
    if not _SCENARIO:
        _SCENARIO.append(await _normalise())
    return _SCENARIO[0]


async def _normalise() -> tuple[float, dict[int, list[Traces | Metrics]]]:
    fleet = FaultyFleet(seed=7, fault=FAULT)
    sink = Sink()
    genai = GenAIProcessor(Settings.make(Kind.PROCESSOR, ComponentID("genai"), Signal.TRACES), GenAIConfig(), sink)
    out: dict[int, list[Traces | Metrics]] = {}
    for t in range(1, DURATION + 1):
        spans, metrics = fleet.second(t)
        if spans is not None:
            await genai.consume(spans)
            out.setdefault(t, []).extend(sink.batches)
            sink.batches.clear()
        if metrics is not None:
            out.setdefault(t, []).append(metrics)
    return fleet.start_s, out


def connector(start: float, config: TriggersConfig = CONFIG) -> TriggersConnector:
    settings = replace(Settings.make(Kind.CONNECTOR, ComponentID("triggers")), clock=ManualClock(start))
    return TriggersConnector(settings, config)


def manual(target: TriggersConnector) -> ManualClock:
    clock = target.order.clock
    assert isinstance(clock, ManualClock)
    return clock


def timeouts(dependency: str, start: float) -> list[Any]:
    """Five timed-out calls to `dependency` within half a second from `start`: over the limit of 3."""
    return [span("GET", start=start + i / 10, kind=CLIENT, error=True,
                 attrs={"peer.service": dependency, "error.type": "ReadTimeout"}) for i in range(5)]


async def play(start: float, arrivals: dict[int, list[Traces | Metrics]], until: int = DURATION + 30,
               into: TriggersConnector | None = None, first: int = 1) -> tuple[TriggersConnector, list[dict]]:
    """Deliver each second's batches (received then), evaluating every evaluation_interval."""
    target = into or connector(start + first - 1)
    clock = manual(target)
    docs: list[dict] = []
    steps = round(1 / CONFIG.evaluation_interval)
    for t in range(first, until + 1):
        for batch in arrivals.get(t, []):
            batch.received_at = start + t
            await target.consume(batch)
        for k in range(steps):
            await clock.advance_to(start + t + k * CONFIG.evaluation_interval)
            docs += target.evaluate_due()
    return target, docs


def late_spans() -> float:
    return REGISTRY.get_sample_value("agentdbg_trigger_late_spans_total", {"connector": "triggers"}) or 0.0


def outcome(docs: list[dict]) -> list[tuple[str, str, str, str]]:
    return sorted((d["kind"], d["subject_key"], d["status"], d["episode"]) for d in docs
                  if d["kind"] != "health_snapshot")


def shuffled(batches: dict[int, list[Any]], spread: int, seed: int) -> dict[int, list[Any]]:
    """Each batch delayed by 0..spread seconds, and each second's arrivals in a random order."""
    rng = random.Random(seed)
    out: dict[int, list[Any]] = {}
    for t, items in batches.items():
        for item in items:
            out.setdefault(t + rng.randint(0, spread), []).append(item)
    for items in out.values():
        rng.shuffle(items)
    return out


def test_the_events_do_not_depend_on_the_arrival_order() -> None:
    async def run() -> None:
        start, batches = await normalised_scenario()
        _, in_order = await play(start, batches)
        assert ("dependency_failure", "service=sql-agent,dependency=postgres", "firing") in {
            e[:3] for e in outcome(in_order)}, outcome(in_order)
        assert ("dependency_failure", "service=sql-agent,dependency=postgres", "resolved") in {
            e[:3] for e in outcome(in_order)}
        before = late_spans()
        _, docs = await play(start, shuffled(batches, spread=4, seed=1))
        assert outcome(docs) == outcome(in_order)
        assert late_spans() == before  # every batch was within the allowed lateness
    asyncio.run(run())


def test_a_batch_later_than_the_allowed_lateness_is_counted_and_left_out() -> None:
    async def run() -> None:
        target = connector(T0)
        clock = manual(target)
        await target.consume(traces(resource("a", [span("ok", start=T0 + 20)]), received_at=T0 + 21))
        await clock.advance_to(T0 + 21)
        assert target.evaluate_due() == []
        # Ended at T0 + 0.5, 20 s before the watermark: too late for the windows, not refused.
        before = late_spans()
        await target.consume(traces(resource("a", timeouts("search", T0)), received_at=T0 + 21))
        await clock.advance_to(T0 + 40)
        assert [d for d in target.evaluate_due() if d["kind"] == "dependency_failure"] == []
        assert late_spans() == before + 5
    asyncio.run(run())


def test_a_sender_clock_ahead_of_ours_cannot_make_the_others_late() -> None:
    async def run() -> None:
        target = connector(T0)
        clock = manual(target)
        ahead = traces(resource("fast-clock", [span("op", start=T0 + 3600)]), received_at=T0)
        await target.consume(ahead)
        await target.consume(traces(resource("a", timeouts("search", T0 - 1)), received_at=T0))
        await clock.advance_to(T0 + 10)
        fired = [d for d in target.evaluate_due() if d["kind"] == "dependency_failure"]
        assert [(d["subject"], d["status"]) for d in fired] == [({"service": "a", "dependency": "search"}, "firing")]
    asyncio.run(run())


def test_a_restored_checkpoint_goes_on_as_if_nothing_stopped(tmp_path) -> None:
    """Kill at second 70 (the episode open), restore from the checkpoint into a new connector,
    replay what the checkpoint had not judged yet (what a Kafka consumer re-reads): the same
    events, the resolution with the episode id of the firing before the restart."""
    async def run() -> None:
        start, batches = await normalised_scenario()
        _, uninterrupted = await play(start, batches)
        crash = 70
        first, before = await play(start, batches, until=crash)
        assert ("dependency_failure", "service=sql-agent,dependency=postgres", "firing") in {
            e[:3] for e in outcome(before)}
        checkpoint = Checkpointer("triggers", FileStore(tmp_path), 64 << 20)
        assert await checkpoint.save(first.records())
        stored = await FileStore(tmp_path).load()
        assert any(key.startswith("episodes|dependency_failure|") for key in stored)
        assert any(key.startswith("dependency_failure|") for key in stored)

        second = connector(start + crash)
        second.checkpointer = Checkpointer("triggers", FileStore(tmp_path), 64 << 20)
        await second.restore_state()
        frontier = second.order.frontier
        assert frontier is not None and frontier == first.order.frontier
        replay = {t: items for t, items in batches.items() if crash - 10 <= t <= crash}
        for items in replay.values():
            for batch in items:
                batch.received_at = start + crash
                await second.consume(batch)
        _, after = await play(start, {t: v for t, v in batches.items() if t > crash}, into=second, first=crash + 1)
        kept = {d.kind for d in second.detectors if d.state_parts()}  # the checkpointed detectors
        assert {"dependency_failure", "error_rate_spike", "performance_degradation", "cost_budget", "deadlock"} <= kept
        # Every event, deadlock's too: without its held traces, agent spans ending after the
        # restart were judged without their earlier children, and looked blocked.
        assert outcome(before + after) == outcome(uninterrupted)
        resolved = [e for e in outcome(after) if e[2] == "resolved" and e[0] == "dependency_failure"]
        assert resolved and resolved[0][3] in {e[3] for e in outcome(before)}
    asyncio.run(run())


def test_unreadable_records_are_skipped_and_the_rest_restored(tmp_path) -> None:
    async def run() -> None:
        store = FileStore(tmp_path)
        await store.write({"dependency_failure|[\"a\",\"db\"]": b'{"v":1,"s":{"timeouts":[[100.0,[4.0]]]}}',
                           "error_rate_spike|\"a\"": b'{"v":99,"s":{}}', "episodes|x": b"not json"})
        target = connector(T0)
        target.checkpointer = Checkpointer("triggers", FileStore(tmp_path), 64 << 20)
        await target.restore_state()
        (detector,) = [d for d in target.detectors if d.kind == "dependency_failure"]
        assert detector.snapshot() == {("a", "db"): {"timeouts": [[100.0, [4.0]]]}}
        assert target.tracker.active == {}
    asyncio.run(run())


def caller(detector: str, key: Any) -> str:
    """The calling service of a dependency_failure key or episode key (what a partitioner would hash)."""
    return key[0] if detector != "episodes" else key.split("service=")[1].split(",")[0]


def test_a_rebalance_restores_and_forgets_only_the_keys_it_is_handed(tmp_path) -> None:
    """What a consumer-group evaluator does with its partitions: restore the assigned keys, drop
    the revoked ones without tombstoning them (their new owner writes them from now on)."""
    async def run() -> None:
        first = connector(T0)
        clock = manual(first)
        for service in ("a", "b"):
            await first.consume(traces(resource(service, timeouts("db", T0)), received_at=T0 + 1))
        await clock.advance_to(T0 + 10)
        assert {d["subject"]["service"] for d in first.evaluate_due() if d["status"] == "firing"} == {"a", "b"}
        first.checkpointer = Checkpointer("triggers", FileStore(tmp_path), 64 << 20)
        assert await first.checkpointer.save(first.records())

        second = connector(T0 + 10)
        second.checkpointer = Checkpointer("triggers", FileStore(tmp_path), 64 << 20)
        await second.restore_state(lambda detector, key: caller(detector, key) == "a")
        (detector,) = [d for d in second.detectors if d.kind == "dependency_failure"]
        assert set(detector.snapshot()) == {("a", "db")}
        assert list(second.tracker.active) == ["dependency_failure|service=a,dependency=db"]

        first.drop_state(lambda detector, key: caller(detector, key) == "a")  # a's partition moved away
        assert set(next(d for d in first.detectors if d.kind == "dependency_failure").snapshot()) == {("b", "db")}
        assert await first.checkpointer.save(first.records())
        stored = await FileStore(tmp_path).load()
        assert "episodes|dependency_failure|service=a,dependency=db" in stored  # not tombstoned by the old owner
    asyncio.run(run())


def test_every_checkpointed_detector_comes_back_as_it_was(tmp_path) -> None:
    """Per detector: the state read back from the file equals what was written, and judges the
    same (windows, baselines, spend, memory series, CPU runs)."""
    async def run() -> None:
        start, batches = await normalised_scenario()
        first, _ = await play(start, batches, until=70)
        assert await Checkpointer("triggers", FileStore(tmp_path), 64 << 20).save(first.records())
        second = connector(start + 70)
        second.checkpointer = Checkpointer("triggers", FileStore(tmp_path), 64 << 20)
        await second.restore_state()
        kept = [(a, b) for a, b in zip(first.detectors, second.detectors) if a.state_parts()]
        assert {a.kind for a, _ in kept} >= {"memory_leak", "infinite_loop", "cost_budget", "deadlock"}
        for was, restored in kept:
            assert was.snapshot() and restored.snapshot() == was.snapshot(), was.kind
            assert restored.evaluate(start + 71) == was.evaluate(start + 71), was.kind
    asyncio.run(run())

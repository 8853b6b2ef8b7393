"""The typed trigger and decision documents (pipeline/documents): what the real detectors
and the safety engine write is what the readers accept, a wrong-typed document is refused
with the field named, and the safety processor sets a bad one aside and decides the rest."""
from __future__ import annotations

import asyncio

import pytest

from evaluation.scenarios.catalogue import Scenario
from evaluation.scenarios.faults import Fault, FaultyFleet
from evaluation.scenarios.harness import build, evaluate
from connectors.triggers.config import TriggersConfig
from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.documents import InvalidDocument, validate
from pipeline.documents.decision import Decision
from pipeline.documents.trigger import Trigger
from pipeline.pdata.events import Events
from pipeline.host import Host
from pipeline.telemetry.metrics import REGISTRY
from processors.safety import SafetyProcessor
from processors.safety.config import SafetyConfig
from processors.safety.engine import SafetyEngine
from tests.unit.test_safety_engine import event

POSTGRES = {"dependency": "postgres"}


async def detector_documents(fault: Fault, duration: int = 300) -> list[dict]:
    """Every document the real genai → triggers path emits for a simulated fleet with `fault`."""
    scenario = Scenario(f"documents/{fault.kind}", 1, "standard", duration, fault)
    fleet = FaultyFleet(seed=scenario.fleet_seed, profiles=scenario.profiles(), fault=fault)
    config = TriggersConfig()
    genai, connector = build(config, fleet.start_s)
    docs: list[dict] = []
    for second in range(1, duration + 1):
        traces, metrics = fleet.second(second)
        if traces is not None:
            await genai.consume(traces)
        if metrics is not None:
            await connector.consume(metrics)
        for step in range(round(1 / config.evaluation_interval)):
            docs += await evaluate(connector, fleet.start_s + second + step * config.evaluation_interval)
    return docs


def test_what_the_detectors_and_the_engine_write_is_what_the_readers_accept():
    docs = []
    for fault in (Fault("dependency_timeout", "sql-agent", 60.0, 240.0, dependency="postgres"),
                  Fault("deadlock", "coder-agent", 60.0), Fault("context_overflow", "support-agent", 60.0, 180.0)):
        docs += asyncio.run(detector_documents(fault))
    kinds = {(d["kind"], d["status"]) for d in docs}
    assert {("dependency_failure", "firing"), ("deadlock", "resolved"), ("cost_budget", "firing"),
            ("context_overflow", "firing"), ("health_snapshot", "snapshot")} <= kinds
    assert all(isinstance(validate(d), Trigger) for d in docs)

    engine = SafetyEngine(SafetyConfig())
    decisions = [x for n, d in enumerate(docs) for x in engine.handle(d, 1_790_000_000.0 + n)]
    decisions += engine.tick(1_790_100_000.0)
    assert {"alert", "breaker_open", "fallback", "resolve_alert"} <= {d["action"] for d in decisions}
    assert all(isinstance(validate(d), Decision) for d in decisions)


GOOD = event("dependency_failure", "firing", POSTGRES, observed=4)


@pytest.mark.parametrize("change, field", [
    ({"subject": "postgres"}, "subject"), ({"subject": ["postgres"]}, "subject"),
    ({"subject": {"dependency": ["postgres"]}}, "subject.dependency"), ({"subject": {"colour": "red"}}, "colour"),
    ({"observed": "many"}, "observed"), ({"observed": True}, "observed"), ({"episode": {"id": "x"}}, "episode"),
    ({"status": "burning"}, "status"), ({"kind": "meltdown"}, "kind"), ({"first_seen": "yesterday"}, "first_seen"),
    ({"first_seen": "2026-11-24T00:00:00"}, "first_seen"), ({"schema": "agentdbg.trigger/v9"}, "unknown schema"),
])
def test_a_wrong_typed_trigger_is_refused_naming_the_field(change, field):
    with pytest.raises(InvalidDocument, match=field):
        validate({**GOOD, **change})


def rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("agentdbg_safety_rejected_events_total", {"reason": reason}) or 0.0


class Sink:
    def __init__(self) -> None:
        self.decisions: list[dict] = []

    async def consume(self, batch) -> None:
        self.decisions += batch.documents


def processor(sink: Sink) -> SafetyProcessor:
    return SafetyProcessor(Settings.make(Kind.PROCESSOR, ComponentID("safety"), Signal.EVENTS), SafetyConfig(), sink)


async def test_the_processor_sets_invalid_documents_aside_and_decides_the_rest():
    sink, before = Sink(), rejected("invalid_document")
    bad = [{**GOOD, "subject": "postgres"}, {**GOOD, "observed": "many"}, "not even an object",
           {"schema": "agentdbg.decision/v1"}]
    await processor(sink).consume(Events([*bad, GOOD]))
    assert rejected("invalid_document") - before == 4
    assert {(d["action"], d["target"]) for d in sink.decisions if isinstance(d["target"], str)} == {
        ("breaker_open", "database"), ("fallback", "database")}


async def test_an_event_the_engine_fails_on_is_set_aside_and_the_rest_decided(monkeypatch):
    """TEST CODE: the engine is made to fail on one valid event, as a bug would; no valid
    event makes the real engine fail, so a failure has to be injected to be seen."""
    sink, before = Sink(), rejected("engine_error")
    unlucky = event("error_rate_spike", "firing", {"service": "checkout"}, 0.3, "ratio", episode="unlucky")
    handle = SafetyEngine.handle

    def failing(self, doc, now):
        if doc["episode"] == "unlucky":
            self.state.breakers["database"].state = "half-changed"  # what a bug may leave behind
            raise RuntimeError("a bug")
        return handle(self, doc, now)

    monkeypatch.setattr(SafetyEngine, "handle", failing)
    safety = processor(sink)
    await safety.consume(Events([unlucky, GOOD]))
    assert rejected("engine_error") - before == 1
    assert [d["action"] for d in sink.decisions if d["target"] == "database"] == ["breaker_open", "fallback"]
    assert safety.engine.state.breakers["database"].state == "open"


async def test_a_state_file_that_cannot_be_written_is_counted_and_deciding_goes_on(tmp_path):
    (tmp_path / "not-a-directory").write_text("")
    config = SafetyConfig(state_file=str(tmp_path / "not-a-directory" / "safety.json"))
    sink = Sink()
    safety = SafetyProcessor(Settings.make(Kind.PROCESSOR, ComponentID("safety"), Signal.EVENTS), config, sink)
    before = REGISTRY.get_sample_value("agentdbg_safety_state_save_failures_total") or 0.0
    await safety.consume(Events([GOOD]))
    await safety.consume(Events([event("dependency_failure", "resolved", POSTGRES)]))
    assert REGISTRY.get_sample_value("agentdbg_safety_state_save_failures_total") - before == 2
    assert [d["action"] for d in sink.decisions if d["target"] == "database"] == ["breaker_open", "fallback"]


async def test_the_ticker_outlives_a_failing_tick(monkeypatch):
    """TEST CODE: one tick is made to fail, as a bug would; the next tick must still run."""
    sink = Sink()
    config = SafetyConfig(tick_interval=0.01)
    safety = SafetyProcessor(Settings.make(Kind.PROCESSOR, ComponentID("safety"), Signal.EVENTS), config, sink)
    await safety.consume(Events([GOOD]))
    safety.engine.state.breakers["database"].since = 0.0  # opened long ago: the half-open is due
    tick, failed = SafetyEngine.tick, []

    def fails_once(self, now):
        if not failed:
            failed.append(now)
            raise RuntimeError("a bug")
        return tick(self, now)

    monkeypatch.setattr(SafetyEngine, "tick", fails_once)
    before = REGISTRY.get_sample_value("agentdbg_safety_tick_failures_total") or 0.0
    await safety.start(Host())
    try:
        for _ in range(500):
            if "breaker_half_open" in [d["action"] for d in sink.decisions]:
                break
            await asyncio.sleep(0.01)
    finally:
        await safety.shutdown()
    assert "breaker_half_open" in [d["action"] for d in sink.decisions]
    assert REGISTRY.get_sample_value("agentdbg_safety_tick_failures_total") - before == 1

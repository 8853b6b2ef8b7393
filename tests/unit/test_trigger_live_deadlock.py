"""Live deadlock: open spans (partial-span heartbeats on the logs pipeline, logfire pending spans
on the traces pipeline) judged on the triggers connector's own clock, a ManualClock here.

The heartbeat records are built the way partial-span-processor 0.0.9 builds them (its
get_log_data: the span so far as OTLP/JSON TracesData, ids rewritten as hex, attributes
partial.event / partial.frequency / partial.body.type); tests/integration/test_live_deadlock.py
runs the real processor against the daemon.
"""
from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any, Callable, cast

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from connectors.triggers import TriggersConnector
from connectors.triggers.config import TriggersConfig
from connectors.triggers.inflight import role_of
from connectors.triggers.partial_body import read_open_span
from pipeline import otlp_json
from pipeline.clock import ManualClock
from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.host import Host
from pipeline.pdata.events import Events
from pipeline.telemetry.metrics import REGISTRY
from testkit.trigger_helpers import CLIENT, INTERNAL, T0, heartbeat_record, logs, new_span_id, resource, span, traces

AGENT = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}
TOOL = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}
LLM = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}
OTHERS_OFF = {name: {"enabled": False} for name in (
    "performance_degradation", "error_rate_spike", "memory_leak", "infinite_loop", "dependency_failure",
    "context_overflow", "cost_budget", "health_snapshot")}


class Sink:
    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []

    async def consume(self, batch: Events) -> None:
        self.docs.extend(batch.documents)

    def deadlocks(self, status: str | None = None) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == "deadlock" and status in (None, d["status"])]


class Live:
    """A started connector on a manual clock, with helpers that play an agent's exports."""

    def __init__(self, **config: Any) -> None:
        self.clock = ManualClock(start=T0)
        settings = Settings(id=ComponentID("triggers", "live"), kind=Kind.CONNECTOR, clock=self.clock)
        self.connector = TriggersConnector(settings, TriggersConfig.model_validate({**OTHERS_OFF, **config}))
        self.sink = Sink()
        self.connector.set_consumer(Signal.EVENTS, self.sink)
        self.fired_at: float | None = None

    async def start(self) -> Live:
        await self.connector.start(cast(Host, None))
        return self

    async def heartbeat(self, open_span: Span, event: str = "heartbeat", service: str = "planner-svc") -> None:
        now = self.clock.time()
        await self.connector.consume(logs(heartbeat_record(open_span, event, service, now), at=now))

    async def ended(self, *spans: Span, service: str = "planner-svc") -> None:
        await self.connector.consume(traces(resource(service, list(spans)), received_at=self.clock.time()))

    async def run_until(self, until: float, every: float = 1.0, beat: tuple[Span, ...] = ()) -> None:
        """Advance to T0 + `until`, heartbeating `beat` every `every` seconds, noting when a
        deadlock first fired."""
        while self.clock.time() < T0 + until - 1e-9:
            step = min(every, T0 + until - self.clock.time())
            for _ in range(round(step / 0.25) or 1):
                await self.clock.advance(min(0.25, step))
                if self.fired_at is None and self.sink.deadlocks("firing"):
                    self.fired_at = self.clock.time() - T0
            for open_span in beat:
                await self.heartbeat(open_span)

    async def reload(self) -> None:
        """Replace the connector by a new one that takes its state, as a SIGHUP reload does."""
        new = TriggersConnector(self.connector.settings, self.connector.config)
        new.take_state_from(self.connector)
        new.set_consumer(Signal.EVENTS, self.sink)
        await self.connector.shutdown()
        self.connector = new
        await new.start(cast(Host, None))

    async def stop(self) -> None:
        await self.connector.shutdown()


def open_span(name: str, start: float, attrs: dict[str, Any], parent: bytes = b"", kind: int = INTERNAL) -> Span:
    """A span as partial-span-processor encodes one still open: no end time."""
    out = span(name, span_id=new_span_id(), parent=parent, start=T0 + start, kind=kind, attrs=attrs)
    out.end_time_unix_nano = 0
    return out


def closed(open_: Span, end: float) -> Span:
    out = Span()
    out.CopyFrom(open_)
    out.end_time_unix_nano = int((T0 + end) * 1e9)
    return out


def live_test(**config: Any) -> Callable[..., Any]:
    """Run `async def test(live)` on a started connector; stop it afterwards."""
    def wrap(body: Callable[[Live], Any]) -> Callable[[], None]:
        def test() -> None:
            async def run() -> None:
                live = await Live(**config).start()
                try:
                    await body(live)
                finally:
                    await live.stop()
            asyncio.run(run())
        test.__name__ = body.__name__
        test.__doc__ = body.__doc__
        return test
    return wrap


@live_test()
async def test_an_agent_blocked_in_a_tool_call_fires_within_a_second_of_the_limit_and_resolves_after_it(
        live: Live) -> None:
    agent = open_span("invoke_agent planner", 0.0, AGENT)
    await live.heartbeat(agent)
    await live.run_until(1.0, beat=(agent,))
    llm = span("chat gpt-4o", trace=1, parent=agent.span_id, start=T0 + 0.1, end=T0 + 1.0, kind=CLIENT, attrs=LLM)
    tool = open_span("execute_tool search", 1.0, TOOL, parent=agent.span_id)
    await live.ended(llm)
    await live.heartbeat(tool)
    await live.run_until(16.0, beat=(agent, tool))  # the tool call blocks for 15 s
    (fired,) = live.sink.deadlocks("firing")
    assert live.fired_at is not None and 11.0 < live.fired_at <= 12.0  # the limit crossed at 1 + 10 s
    assert fired["subject"] == {"service": "planner-svc", "agent": "planner"}
    assert fired["severity"] == "critical" and fired["threshold"] == 10.0
    assert fired["examples"] == {"trace_ids": [agent.trace_id.hex()], "span_ids": [agent.span_id.hex()]}
    assert "execute_tool" not in fired["message"] and "no progress" in fired["message"]
    await live.heartbeat(tool, "stop")  # the call returns
    await live.run_until(16.5)
    (resolved,) = live.sink.deadlocks("resolved")
    assert resolved["episode"] == fired["episode"]
    await live.ended(closed(tool, 16.0))
    await live.run_until(17.0, beat=(agent,))
    await live.heartbeat(agent, "stop")
    await live.ended(closed(agent, 17.0))
    await live.run_until(40.0)  # after the fact: its own time is 0.1 s, and it was judged live already
    assert len(live.sink.deadlocks()) == 2


@live_test()
async def test_a_long_busy_agent_whose_children_keep_ending_is_not_a_deadlock(live: Live) -> None:
    agent = open_span("invoke_agent planner", 0.0, AGENT)
    await live.heartbeat(agent)
    for n in range(15):  # 30 s of 2-s LLM calls, each exported as it ends
        await live.run_until(2.0 * (n + 1), beat=(agent,))
        await live.ended(span("chat gpt-4o", trace=1, parent=agent.span_id, start=T0 + 2 * n,
                              end=T0 + 2 * n + 1.9, kind=CLIENT, attrs=LLM))
    await live.run_until(31.0, beat=(agent,))
    assert live.sink.deadlocks() == []


@live_test()
async def test_an_agent_that_ends_at_9_9_seconds_is_not_a_deadlock(live: Live) -> None:
    agent = open_span("invoke_agent planner", 0.0, AGENT)
    await live.heartbeat(agent)
    await live.run_until(9.9, every=0.1, beat=(agent,))
    await live.heartbeat(agent, "stop")
    await live.run_until(12.0)
    await live.ended(closed(agent, 9.9))  # the ended span comes later, with the exporter's delay
    await live.run_until(30.0)
    assert live.sink.deadlocks() == []


@live_test()
async def test_a_streaming_llm_call_is_judged_by_the_ceiling_only(live: Live) -> None:
    agent = open_span("invoke_agent planner", 0.0, AGENT)
    llm = open_span("chat gpt-4o", 0.2, LLM, parent=agent.span_id, kind=CLIENT)
    await live.heartbeat(agent)
    await live.heartbeat(llm)
    await live.run_until(30.0, beat=(agent, llm))  # 30 s of streaming: under the 120 s ceiling
    assert live.sink.deadlocks() == []


@live_test(deadlock={"llm_ceiling": "20s"})
async def test_a_streaming_llm_call_over_the_ceiling_fires_for_its_agent(live: Live) -> None:
    agent = open_span("invoke_agent planner", 0.0, AGENT)
    llm = open_span("chat gpt-4o", 0.2, LLM, parent=agent.span_id, kind=CLIENT)
    await live.heartbeat(agent)
    await live.heartbeat(llm)
    await live.run_until(21.0, beat=(agent, llm))
    (fired,) = live.sink.deadlocks("firing")
    assert 20.2 < cast(float, live.fired_at) <= 21.0
    assert fired["subject"] == {"service": "planner-svc", "agent": "planner"} and fired["threshold"] == 20.0
    assert fired["examples"]["span_ids"] == [llm.span_id.hex()]


@live_test()
async def test_one_event_for_a_nested_agent_blocked_inside_another(live: Live) -> None:
    outer = open_span("invoke_agent planner", 0.0, AGENT)
    inner = open_span("invoke_agent researcher", 0.5, {**AGENT, "gen_ai.agent.name": "researcher"},
                      parent=outer.span_id)
    await live.heartbeat(outer)
    await live.heartbeat(inner)
    await live.run_until(12.0, beat=(outer, inner))
    (fired,) = live.sink.deadlocks("firing")
    assert fired["subject"]["agent"] == "researcher"


@live_test(inflight={"forget_after": "30s"})
async def test_a_span_whose_heartbeats_stop_without_a_stop_is_forgotten_and_counted(live: Live) -> None:
    labels = {"connector": "triggers/live", "detector": "inflight", "reason": "forgotten"}
    before = REGISTRY.get_sample_value("agentdbg_trigger_state_evictions_total", labels) or 0.0
    agent = open_span("invoke_agent planner", 0.0, AGENT)
    await live.heartbeat(agent)
    await live.run_until(5.0, beat=(agent,))  # then the client dies: no more heartbeats, no stop
    await live.run_until(34.0)
    assert [d["status"] for d in live.sink.deadlocks()] == ["firing"]  # blocked since 0 s, as far as we know
    await live.run_until(36.0)
    assert [d["status"] for d in live.sink.deadlocks()] == ["firing", "resolved"]
    assert REGISTRY.get_sample_value("agentdbg_trigger_state_evictions_total", labels) == before + 1
    assert live.connector.live.inflight.spans == {}


@live_test(inflight={"max_spans": 2})
async def test_the_table_is_bounded_and_counts_what_it_lets_go_of(live: Live) -> None:
    labels = {"connector": "triggers/live", "detector": "inflight", "reason": "span_limit"}
    before = REGISTRY.get_sample_value("agentdbg_trigger_state_evictions_total", labels) or 0.0
    first, second, third = (open_span(f"invoke_agent a{n}", 0.0, AGENT) for n in range(3))
    for open_ in (first, second, third):
        await live.heartbeat(open_)
    await live.run_until(0.5)
    assert set(live.connector.live.inflight.spans) == {second.span_id, third.span_id}
    assert REGISTRY.get_sample_value("agentdbg_trigger_state_evictions_total", labels) == before + 1


@live_test()
async def test_a_heartbeat_that_cannot_be_read_is_counted_and_the_rest_of_its_batch_is_read(live: Live) -> None:
    labels = {"connector": "triggers/live", "event": "unreadable"}
    before = REGISTRY.get_sample_value("agentdbg_trigger_inflight_records_total", labels) or 0.0
    agent = open_span("invoke_agent planner", 0.0, AGENT)
    bad = heartbeat_record(open_span("invoke_agent other", 0.0, AGENT), "heartbeat", "svc", T0)
    bad.body.string_value = '{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "zz'
    good = heartbeat_record(agent, "heartbeat", "planner-svc", T0)
    await live.connector.consume(logs(bad, good, at=T0))
    await live.run_until(0.5)
    assert list(live.connector.live.inflight.spans) == [agent.span_id]
    assert REGISTRY.get_sample_value("agentdbg_trigger_inflight_records_total", labels) == before + 1


@live_test()
async def test_a_logfire_pending_span_opens_the_span_and_its_real_span_closes_it(live: Live) -> None:
    agent = open_span("invoke_agent planner", 0.0, AGENT)
    pending = span("invoke_agent planner", trace=1, span_id=new_span_id(), parent=agent.span_id, start=T0,
                   end=T0, attrs={**AGENT, "logfire.span_type": "pending_span",
                                  "logfire.pending_parent_id": "0000000000000000"})
    await live.ended(pending)
    (entry,) = live.connector.live.inflight.spans.values()
    assert (entry.span_id, entry.parent, entry.role, entry.agent) == (agent.span_id, b"", "agent", "planner")
    await live.run_until(11.0)
    (fired,) = live.sink.deadlocks("firing")
    assert fired["examples"]["span_ids"] == [agent.span_id.hex()]
    await live.ended(closed(agent, 11.0))
    await live.run_until(11.5)
    assert [d["status"] for d in live.sink.deadlocks()] == ["firing", "resolved"]
    assert live.connector.live.inflight.spans == {}


@pytest.mark.parametrize("late", [False, True])
def test_a_heartbeat_after_its_span_arrived_does_not_open_it_again(late: bool) -> None:
    @live_test()
    async def body(live: Live) -> None:
        agent = open_span("invoke_agent planner", 0.0, AGENT)
        await live.heartbeat(agent)
        await live.ended(closed(agent, 1.0))
        if late:
            await live.heartbeat(agent)  # sent before the span ended, arrived after it
        await live.run_until(20.0)
        assert live.connector.live.inflight.spans == {} and live.sink.deadlocks() == []
    body()


@live_test()
async def test_a_reload_keeps_the_open_spans_and_the_live_episode(live: Live) -> None:
    agent = open_span("invoke_agent planner", 0.0, AGENT)
    tool = open_span("execute_tool search", 0.5, TOOL, parent=agent.span_id)
    await live.heartbeat(agent)
    await live.heartbeat(tool)
    await live.run_until(11.0, beat=(agent, tool))
    (fired,) = live.sink.deadlocks("firing")
    await live.reload()
    await live.run_until(13.0, beat=(agent, tool))
    assert live.sink.deadlocks("firing") == [fired]  # still the one episode
    await live.heartbeat(tool, "stop")
    await live.run_until(13.5)
    (resolved,) = live.sink.deadlocks("resolved")
    assert resolved["episode"] == fired["episode"]
    (judge,) = [d for d in live.connector.detectors if d.kind == "deadlock"]
    assert judge.inflight is live.connector.live.inflight  # type: ignore[attr-defined]


CAPTURED = Path(__file__).resolve().parents[1] / "clients" / "corpus" / "partial_span_processor.jsonl"


def captured_records() -> list[LogRecord]:
    """The log records partial-span-processor 0.0.9 exported for an agent span and its tool call
    (two heartbeats, two stops; captured from the real processor with an in-memory exporter)."""
    records = []
    for line in CAPTURED.read_text().splitlines():
        got = json.loads(line)
        record = LogRecord(trace_id=bytes.fromhex(got["trace_id"]), span_id=bytes.fromhex(got["span_id"]),
                           body=AnyValue(string_value=got["body"]))
        record.attributes.extend(KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in got["attributes"].items())
        records.append(record)
    return records


@live_test()
async def test_a_real_partial_span_processor_body_gives_the_spans_fields(live: Live) -> None:
    records = captured_records()
    await live.connector.consume(logs(*records[:2], at=T0))
    table = live.connector.live.inflight.spans
    for record in records[:2]:  # what went in: the body as protobuf's OTLP/JSON reader reads it
        message = otlp_json.decode(record.body.string_value.encode(), ExportTraceServiceRequest)
        (sent,) = message.resource_spans[0].scope_spans[0].spans
        entry = table[sent.span_id]
        attributes = {kv.key: kv.value.string_value for kv in sent.attributes}
        assert (entry.trace_id, entry.parent, entry.name, entry.start) == (
            sent.trace_id, sent.parent_span_id, sent.name, sent.start_time_unix_nano / 1e9)
        assert entry.service == "partial-agent" and entry.end is None
        operation, agent = attributes["gen_ai.operation.name"], attributes.get("gen_ai.agent.name")
        assert entry.role == role_of(operation, agent, sent.kind)
    roles = {entry.name: entry.role for entry in table.values()}
    assert roles == {"invoke_agent planner": "agent", "execute_tool search": "other"}
    await live.connector.consume(logs(*records[2:], at=T0 + 1))
    assert [entry.end is not None for entry in table.values()] == [True, True]


def test_a_body_without_the_records_span_or_with_bad_fields_is_not_read() -> None:
    record = captured_records()[0]
    assert read_open_span(record.body.string_value, new_span_id()) is None  # another span's body
    for bad in ('"traceId":"zz', '"startTimeUnixNano":"x', '"kind":"SPAN_KIND_NOPE'):
        field = bad.split(":")[0]
        body = re.sub(field + r':"[^"]*', bad, record.body.string_value, count=1)
        assert body != record.body.string_value and read_open_span(body, record.span_id) is None
    assert read_open_span(record.body.string_value, record.span_id) is not None

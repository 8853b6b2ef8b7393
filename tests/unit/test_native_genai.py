"""The genai processor's compiled wire work (native/: picking attributes, splicing the new ones
into the bytes) against the pure-Python reference (testkit/genai_reference.py: upb, per-span
pick and MergeFromString), driven by twin processors of one config: the same spans come out,
byte for byte once parsed, the same attribute counts and the same session memory; on the
seeded fleet, every real client family's captured requests, hand-made extremes and fuzzed
requests. Bytes the picker cannot read pass the batch on untouched."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.pdata.traces import Traces
from processors.genai import GenAIConfig, GenAIProcessor
from processors.genai import aliases as A
from testkit.genai_reference import reference_process
from testkit.native_corpus import client_families, client_requests, extreme_requests, fleet_requests
from tests.fuzz.budget import budget
from tests.fuzz.strategies import any_values, scalar_values, spans, trace_requests

# Attributes under the keys the processor reads, with any value (strings, counts as text, NaN,
# arrays where a scalar belongs ...): the normaliser's whole decision table, fuzzed.
genai_attributes = st.lists(st.builds(KeyValue, key=st.sampled_from(sorted(A.WANTED_KEYS)),
                                      value=st.one_of(scalar_values, scalar_values, any_values)), max_size=12)


@st.composite
def genai_requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        scope = request.resource_spans.add().scope_spans.add()
        scope.scope.name = draw(st.sampled_from(["", "openai.agents", "agentops.sdk", "x"]))
        for span in draw(st.lists(spans(), min_size=1, max_size=4)):
            span.trace_id = draw(st.sampled_from([b"\x01" * 16, b"\x02" * 16]))  # spans share traces
            span.attributes.extend(draw(genai_attributes))
            scope.spans.append(span)
    return request


def twins(**config: Any) -> tuple[GenAIProcessor, GenAIProcessor]:
    settings = Settings.make(Kind.PROCESSOR, ComponentID("genai"), Signal.TRACES)
    return (GenAIProcessor(settings, GenAIConfig(**config), None),  # type: ignore[arg-type]
            GenAIProcessor(settings, GenAIConfig(**config), None))  # type: ignore[arg-type]


def assert_same_output(requests: list[ExportTraceServiceRequest], **config: Any) -> int:
    """Every request through both processors in order (sessions carry over); total written."""
    compiled, reference = twins(**config)
    total = 0
    for message in requests:
        wire = message.SerializeToString()
        batch = Traces.from_wire(wire)
        written = compiled.process(batch)
        expected = ExportTraceServiceRequest.FromString(wire)
        assert reference_process(reference, expected) == written
        assert batch.item_count == Traces.from_wire(batch.wire()).item_count
        # Parsed and serialised again: the same spans, attributes in the same order, NaN bits included.
        assert ExportTraceServiceRequest.FromString(batch.wire()).SerializeToString() == expected.SerializeToString()
        assert (batch.wire() == wire) == (written == 0)
        total += written
    assert compiled.memory._items == reference.memory._items
    return total


def test_the_seeded_fleet() -> None:
    assert assert_same_output(fleet_requests()) > 0


@pytest.mark.parametrize("family", client_families())
def test_every_client_family(family: str) -> None:
    assert assert_same_output(client_requests(family)) > 0


@pytest.mark.parametrize("config", [{}, {"session_from_trace": False}, {"write_cost": False},
                                    {"enabled_sources": ["openinference"]}])
def test_the_fleet_under_other_configs(config: dict[str, Any]) -> None:
    assert_same_output(fleet_requests(count=2), **config)


def test_extremes() -> None:
    assert_same_output(extreme_requests())


@budget(0.5)
@given(trace_requests(deep=False))
def test_fuzzed_requests(message: ExportTraceServiceRequest) -> None:
    assert_same_output([message])


@budget(0.5)
@given(st.lists(genai_requests(), min_size=1, max_size=3))
def test_fuzzed_genai_attributes(requests: list[ExportTraceServiceRequest]) -> None:
    assert_same_output(requests)


def test_bytes_the_picker_cannot_read_pass_unchanged_and_are_counted() -> None:
    compiled, _ = twins()
    batch = Traces(None, b"\x0a\x05\x12", item_count=1)
    assert compiled.process(batch) == 0
    assert batch.wire() == b"\x0a\x05\x12" and compiled.failures == 1

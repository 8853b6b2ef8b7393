"""The kafka exporter's `partition_by` key families (pipeline/partitioning.py): which spans
each family publishes, under which record key, and that the keys are the detectors' subjects."""
from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import ValidationError

from connectors.triggers.detectors import dependency_failure
from exporters.kafka.config import KafkaConfig
from exporters.kafka.records import RecordEncoder
from pipeline import otlp_json
from pipeline.partitioning import DEPENDENCY_KEYS, partition_of, subject_key_of
from pipeline.pdata.traces import Traces, iter_spans
from testkit.trigger_helpers import CLIENT, SERVER, resource, span, traces


def batch() -> Traces:
    """Two services; a session, a bare trace, a client call, a call without a target, a cost."""
    return traces(
        resource("planner", [
            span("plan", trace=1, kind=SERVER, attrs={"gen_ai.conversation.id": "conv-7"}),
            span("GET", trace=1, kind=CLIENT, attrs={"peer.service": "orders-api"}),
            span("GET", trace=2, kind=CLIENT),  # no dependency named
            span("chat", trace=2, kind=CLIENT, attrs={"gen_ai.provider.name": "openai", "gen_ai.usage.cost": 0.5}),
        ]),
        resource("coder", [span("run", trace=3, kind=SERVER, attrs={"llm.cost.total": 0.25})]),
    )


def published(family: str, encoding: str = "otlp_proto") -> dict[bytes | None, list[str]]:
    """{record key: span names} of what the encoder makes of `batch()` for `family`."""
    out: dict[bytes | None, list[str]] = {}
    decode = ExportTraceServiceRequest.FromString if encoding == "otlp_proto" else (
        lambda value: otlp_json.decode(value, ExportTraceServiceRequest))
    for record in RecordEncoder(encoding, family, 1_000_000).encode(batch()).records:
        names = [s.name for s in iter_spans(decode(record.value))]
        out.setdefault(record.key, []).extend(names)
    return out


def test_service_family_keys_every_span_by_its_service():
    assert published("service") == {b"planner": ["plan", "GET", "GET", "chat"], b"coder": ["run"]}
    # otlp_proto cuts the wire bytes per resource; otlp_json builds requests per key: the same spans.
    assert published("service", "otlp_json") == published("service")


def test_session_family_uses_the_conversation_id_else_the_trace_id():
    trace = lambda n: n.to_bytes(16, "big").hex().encode()  # noqa: E731
    # The conversation id is on one span of trace 1; the genai processor puts it on every span of
    # the trace before the exporter, so here the other span of trace 1 keys by its trace id.
    assert published("session") == {b"conv-7": ["plan"], trace(1): ["GET"], trace(2): ["GET", "chat"],
                                     trace(3): ["run"]}


def test_dependency_family_keeps_client_spans_that_name_a_dependency():
    assert published("service_dependency") == {b"planner\x1forders-api": ["GET"], b"planner\x1fopenai": ["chat"]}


def test_budget_family_keeps_only_spans_with_a_cost():
    assert published("budget_owner") == {b"planner": ["chat"], b"coder": ["run"]}


def test_dependency_keys_are_the_ones_the_detector_reads():
    assert DEPENDENCY_KEYS == dependency_failure.TARGET_KEYS


def test_partition_traces_by_id_is_the_trace_family_and_conflicts_with_another():
    assert KafkaConfig(partition_traces_by_id=True).key_family == "trace_id"
    assert KafkaConfig(partition_by="session").key_family == "session"
    with pytest.raises(ValidationError, match="cannot be combined"):
        KafkaConfig(partition_traces_by_id=True, partition_by="service")


# -- the evaluator side: where a detector subject's state belongs ---------------------------------
def test_a_subject_is_placed_by_the_record_key_its_spans_were_published_under():
    assert subject_key_of("service", {"service": "planner", "model": "gpt-4o"}) == b"planner"
    assert subject_key_of("budget_owner", {"service": "planner"}) == b"planner"
    dependency = {"service": "planner", "dependency": "orders-api"}
    assert subject_key_of("service_dependency", dependency) in published("service_dependency")
    # An agent's spend or latency is summed over services: no one record key holds it.
    assert subject_key_of("budget_owner", {"agent": "researcher"}) is None
    assert subject_key_of("trace_id", {"service": "planner"}) is None


def test_partition_of_is_kafkas_default_partitioner():
    partitioner = DefaultPartitioner()
    for key in (b"planner", b"planner\x1forders-api", bytes(range(40))):
        assert partition_of(key, 12) == partitioner(key, list(range(12)), list(range(12)))

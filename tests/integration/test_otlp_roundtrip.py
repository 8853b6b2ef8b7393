"""Acceptance 1: what an agent sends over OTLP is what the `file` exporter writes, span by span.

One daemon (otlp receiver → batch → file/json and file/proto) takes spans over gRPC,
HTTP/protobuf and HTTP/JSON, each with and without compression. The agents are the
OpenTelemetry Python SDK's own OTLP exporters; the JSON requests are written by hand the
way the OTLP spec lays them out (hex ids, 64-bit integers as strings, integer enums).
Every span is then read back from both output files and compared field by field with what
went in: ids, parent, name, kind, times, attributes of every type, events, links, status,
resource and scope.
"""
from __future__ import annotations

import base64
import gzip
import os
import zlib
from typing import Any

import grpc
import pytest
import requests
import zstandard
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from pipeline import otlp_json
from testkit.harness import BASE_CONFIG, Daemon, file_exporter, pipeline_overlay, wait_until
from testkit.otlp_spans import (T0, agent_run, assert_spans_once, expected_from_sdk, export_spans, otlp_exporter,
                              read_json_lines, read_proto_records, spans_out)

OVERLAY = pipeline_overlay(file_exporter("out/spans.jsonl", name="file/json")
                           + file_exporter("out/spans.binpb", name="file/proto", format="proto"))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with Daemon(BASE_CONFIG, workdir=tmp_path_factory.mktemp("roundtrip"), overlay=OVERLAY) as running:
        yield running


# -- reading the file exporter's output ------------------------------------------------------
def wait_for_output(daemon: Daemon, expected: dict[str, dict[str, Any]]) -> dict[str, dict[str, list]]:
    """Wait until every expected span is in both files; return their copies per format."""
    files = {"json": (daemon.dir / "out" / "spans.jsonl", read_json_lines),
             "proto": (daemon.dir / "out" / "spans.binpb", read_proto_records)}
    found: dict[str, dict[str, list]] = {}

    def all_there() -> bool:
        for fmt, (path, reader) in files.items():
            found[fmt] = spans_out(reader(path))
            if not set(expected) <= set(found[fmt]):
                return False
        return True

    wait_until(all_there, timeout=15, message=f"{len(expected)} spans in the file exporter output")
    return found


def assert_same_spans(daemon: Daemon, expected: dict[str, dict[str, Any]]) -> None:
    for fmt, spans in wait_for_output(daemon, expected).items():
        assert_spans_once(spans, expected, fmt)


# -- spans made by the OpenTelemetry SDK -----------------------------------------------------
ATTRIBUTES = {
    "str": "héllo, wörld ✓",
    "empty": "",
    "bool.true": True,
    "bool.false": False,
    "int": 42,
    "int.negative": -7,
    "int.max": 2**63 - 1,
    "int.min": -(2**63),
    "int.beyond_double": 2**53 + 1,
    "double": 3.25,
    "double.negative": -1e-9,
    "bytes": b"\x00\x01\xfe\xff",
    "array.str": ("a", "b", ""),
    "array.bool": (True, False),
    "array.int": (1, -2, 2**62),
    "array.double": (0.5, 1.5),
    "array.empty": (),
    "map": {"nested": "value", "n": 7, "list": (1, 2), "inner": {"deep": True}},
}


RESOURCE = {"deployment.canary": False, "host.cpu.count": 2, "resource.ratio": 0.75, "resource.tags": ("a", "b")}


def sdk_spans() -> list:
    """A small agent run made with the SDK: two services (resources), two scopes, every span kind,
    parent/child, events, links (also to a remote trace), error/ok/unset status."""
    return agent_run(ATTRIBUTES, resource=RESOURCE)


def test_sdk_spans_cover_what_the_roundtrip_claims():
    """Guard on the input itself: every kind, status, attribute type and a remote link are present."""
    expected = expected_from_sdk(sdk_spans())
    assert len(expected) == 10
    assert {s["kind"] for s in expected.values()} == {1, 2, 3, 4, 5}
    assert {s["status"] for s in expected.values()} >= {(2, "upstream timed out after 30s"), (1, ""), (0, "")}
    assert len({s["resource"]["service.name"] for s in expected.values()}) == 2
    assert {type(v) for v in next(s for s in expected.values() if s["kind"] == 2)["attributes"].values()} == \
        {str, bool, int, float, bytes, tuple, dict}


@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip], ids=["plain", "gzip"])
def test_grpc_sdk_exporter_roundtrip(daemon, compression):
    spans = sdk_spans()
    export_spans(otlp_exporter("grpc", daemon.ports["grpc"], compression=compression, timeout=10), spans)
    assert_same_spans(daemon, expected_from_sdk(spans))


@pytest.mark.parametrize("compression", [HttpCompression.NoCompression, HttpCompression.Gzip,
                                         HttpCompression.Deflate], ids=["plain", "gzip", "deflate"])
def test_http_protobuf_sdk_exporter_roundtrip(daemon, compression):
    spans = sdk_spans()
    export_spans(otlp_exporter("http", daemon.ports["http"], compression=compression, timeout=10), spans)
    assert_same_spans(daemon, expected_from_sdk(spans))


# -- OTLP/JSON written by hand -----------------------------------------------------------------
def json_value(value: Any) -> dict[str, Any]:
    """OTLP/JSON AnyValue: int64 as a decimal string, bytes as base64 (ids are the ones in hex)."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, tuple):
        return {"arrayValue": {"values": [json_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": [{"key": k, "value": json_value(v)} for k, v in value.items()]}}
    raise TypeError(value)


def json_attributes(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": json_value(v)} for k, v in attrs.items()]


def hand_spans() -> dict[str, dict[str, Any]]:
    """Expected spans (normalised form) for the hand-written JSON request."""
    trace_a, trace_b = os.urandom(16).hex(), os.urandom(16).hex()
    ids = [os.urandom(8).hex() for _ in range(5)]
    resource_a = {"service.name": "json-agent", "service.version": "3.1", "replica": 2}
    resource_b = {"service.name": "json-tool"}
    scope_a = ("json.scope", "1.0.0", {"scope.k": "v"})
    scope_b = ("json.other", "", {})
    common = {"events": [], "links": [], "status": (0, ""), "attributes": {}}
    spans = [
        {**common, "trace_id": trace_a, "span_id": ids[0], "parent_span_id": "", "name": "root",
         "kind": 2, "start": T0, "end": T0 + 2_000_000_000, "attributes": ATTRIBUTES,
         "events": [("gen_ai.choice", T0 + 5, {"index": 0, "finish_reason": "stop"}), ("bare", T0 + 6, {})],
         "status": (2, "model returned 500"), "resource": resource_a, "scope": scope_a},
        {**common, "trace_id": trace_a, "span_id": ids[1], "parent_span_id": ids[0], "name": "llm call",
         "kind": 3, "start": T0 + 1, "end": T0 + 3, "status": (1, ""),
         "links": [(trace_b, ids[4], {"link.reason": "retry of", "n": 2}), (trace_a, ids[0], {})],
         "resource": resource_a, "scope": scope_a},
        {**common, "trace_id": trace_a, "span_id": ids[2], "parent_span_id": ids[0], "name": "internal",
         "kind": 1, "start": T0 + 2, "end": T0 + 4, "resource": resource_a, "scope": scope_b},
        {**common, "trace_id": trace_b, "span_id": ids[3], "parent_span_id": "", "name": "produce",
         "kind": 4, "start": T0 + 3, "end": T0 + 5, "resource": resource_b, "scope": scope_b},
        {**common, "trace_id": trace_b, "span_id": ids[4], "parent_span_id": ids[3], "name": "consume",
         "kind": 5, "start": T0 + 4, "end": T0 + 6, "attributes": {"big": 2**63 - 1},
         "resource": resource_b, "scope": scope_b},
    ]
    return {span["span_id"]: span for span in spans}


def hand_json_document(spans: dict[str, dict[str, Any]]) -> bytes:
    """The OTLP/JSON request for `spans`: hex ids, int64s as strings, integer enums, an unknown field."""
    import json

    groups: dict[str, dict[str, list]] = {}
    resources: dict[str, dict] = {}
    scopes_by_name: dict[str, tuple] = {}
    for span in spans.values():
        key = span["resource"]["service.name"]
        resources[key] = span["resource"]
        scopes_by_name[span["scope"][0]] = span["scope"]
        groups.setdefault(key, {}).setdefault(span["scope"][0], []).append(span)
    document = {"resourceSpans": [{
        "resource": {"attributes": json_attributes(resources[key])},
        "scopeSpans": [{
            "scope": {"name": scope_name, "version": scopes_by_name[scope_name][1],
                      "attributes": json_attributes(scopes_by_name[scope_name][2])},
            "spans": [{
                "traceId": s["trace_id"], "spanId": s["span_id"], "parentSpanId": s["parent_span_id"],
                "name": s["name"], "kind": s["kind"],
                "startTimeUnixNano": str(s["start"]), "endTimeUnixNano": str(s["end"]),
                "attributes": json_attributes(s["attributes"]),
                "events": [{"name": n, "timeUnixNano": str(t), "attributes": json_attributes(a)}
                           for n, t, a in s["events"]],
                "links": [{"traceId": t, "spanId": i, "attributes": json_attributes(a)} for t, i, a in s["links"]],
                "status": {"code": s["status"][0], "message": s["status"][1]},
                "someFutureField": {"ignored": True},
            } for s in scope_spans],
        } for scope_name, scope_spans in scopes.items()],
    } for key, scopes in groups.items()]}
    return json.dumps(document).encode()


ENCODERS = {
    None: lambda body: body,
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "zstd": lambda body: zstandard.ZstdCompressor().compress(body),
}


@pytest.mark.parametrize("encoding", list(ENCODERS), ids=["plain", "gzip", "deflate", "zstd"])
def test_http_json_by_hand_roundtrip(daemon, encoding):
    expected = hand_spans()
    headers = {"Content-Type": "application/json"}
    if encoding:
        headers["Content-Encoding"] = encoding
    response = requests.post(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces",
                             data=ENCODERS[encoding](hand_json_document(expected)), headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    reply = otlp_json.decode(response.content, ExportTraceServiceResponse)
    assert not reply.HasField("partial_success") or reply.partial_success.rejected_spans == 0
    assert_same_spans(daemon, expected)


def test_http_json_accepts_integer_int64_and_string_enum_names(daemon):
    """Lenient forms the spec allows a receiver to take: plain JSON numbers for int64, enum names."""
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    document = {"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": [{
        "traceId": trace_id, "spanId": span_id, "name": "lenient", "kind": "SPAN_KIND_CLIENT",
        "startTimeUnixNano": T0, "endTimeUnixNano": T0 + 9,
        "attributes": [{"key": "n", "value": {"intValue": 5}}],
        "status": {"code": "STATUS_CODE_ERROR", "message": "x"}}]}]}]}
    response = requests.post(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces", json=document, timeout=10)
    assert response.status_code == 200, response.text
    expected = {span_id: {"trace_id": trace_id, "name": "lenient", "kind": 3, "start": T0, "end": T0 + 9,
                          "attributes": {"n": 5}, "status": (2, "x"), "resource": {}}}
    assert_same_spans(daemon, expected)


def test_http_protobuf_answer_is_protobuf(daemon):
    """The answer to an OTLP/protobuf request is an ExportTraceServiceResponse in protobuf."""
    expected = hand_spans()
    request = otlp_json.decode(hand_json_document(expected), ExportTraceServiceRequest)
    response = requests.post(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces", data=request.SerializeToString(),
                             headers={"Content-Type": "application/x-protobuf"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/x-protobuf")
    reply = ExportTraceServiceResponse.FromString(response.content)
    assert reply.partial_success.rejected_spans == 0
    assert_same_spans(daemon, expected)


def test_json_output_uses_hex_ids_and_integer_enums(daemon):
    """The file exporter's JSON is OTLP/JSON as the spec writes it (what otelcol's file exporter writes)."""
    import json

    expected = hand_spans()
    response = requests.post(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces", data=hand_json_document(expected),
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 200
    wait_for_output(daemon, expected)
    lines = (daemon.dir / "out" / "spans.jsonl").read_bytes().split(b"\n")[:-1]
    written = {}
    for line in lines:
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    written[span["spanId"]] = span
    for span_id, want in expected.items():
        span = written[span_id]
        assert span["traceId"] == want["trace_id"]
        assert span.get("parentSpanId", "") == want["parent_span_id"]
        assert span["kind"] == want["kind"]
        assert span["startTimeUnixNano"] == str(want["start"])
        for link, (trace_id, link_span, _) in zip(span.get("links", []), want["links"]):
            assert (link["traceId"], link["spanId"]) == (trace_id, link_span)
        if want["status"][0]:
            assert span["status"]["code"] == want["status"][0]

"""The `zipkin` receiver, driven by real Zipkin clients from PyPI, read back from the file exporter.

- `py_zipkin` (its SimpleHTTPTransport posting to the daemon) in both v2 encodings, JSON and
  protobuf: what each payload held (ids, 64-bit trace ids, kinds, µs times, tags, remote
  endpoints, annotations, `error` tags, the shared flag) comes back span by span as OTLP.
- the OpenTelemetry SDK's Zipkin JSON exporter (`opentelemetry-exporter-zipkin-json`): the SDK's
  own spans come back with their ids, kinds, times (rounded to the µs Zipkin carries), typed
  event attributes, statuses, resources and scopes.
- bad input: each refusal a client sees (400 with the reason, 415, 413, 405, 404 for v1), the
  daemon alive after it, the request counted; a pipeline that refuses gives 503 + Retry-After.

One daemon serves the module: `zipkin` feeds the file exporter; `zipkin/refusing` feeds an
otlphttp exporter to a port nothing listens on, with a one-batch queue, so it refuses.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from hypothesis import given, settings, strategies as st
from py_zipkin import Kind
from py_zipkin.encoding import Encoding
from py_zipkin.encoding.protobuf import zipkin_pb2 as pyzipkin_pb2
from py_zipkin.transport import SimpleHTTPTransport
from py_zipkin.zipkin import ZipkinAttrs, zipkin_span

from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from tests.conftest import require_binary
from testkit.harness import BASE_CONFIG, ROOT, Daemon, batch_processor, file_exporter, free_port, wait_until
from testkit.otlp_spans import agent_run, expected_from_sdk, read_json_lines, spans_out

ZIPKIN, REFUSING, DEAD = free_port(), free_port(), free_port()
LIMIT = 1024 * 1024
OVERLAY = f"""
receivers:
  zipkin:
    endpoint: 127.0.0.1:{ZIPKIN}
    max_request_body_size: {LIMIT}
  zipkin/refusing:
    endpoint: 127.0.0.1:{REFUSING}
processors:
{batch_processor()}
exporters:
{file_exporter()}
  otlphttp:
    endpoint: http://127.0.0.1:{DEAD}
    timeout: 1s
    sending_queue: {{queue_size: 1, num_consumers: 1}}
    retry_on_failure: {{initial_interval: 1s, max_interval: 1s, max_elapsed_time: 0}}
service:
  shutdown_timeout: 2s  # the refusing pipeline's queue never drains: do not wait 30 s for it
  pipelines:
    traces:
      receivers: [otlp, zipkin]
      processors: [batch]
      exporters: [file]
    traces/refusing:
      receivers: [zipkin/refusing]
      exporters: [otlphttp]
"""
URL = f"http://127.0.0.1:{ZIPKIN}/api/v2/spans"
KINDS = {"CLIENT": Span.SPAN_KIND_CLIENT, "SERVER": Span.SPAN_KIND_SERVER,
         "PRODUCER": Span.SPAN_KIND_PRODUCER, "CONSUMER": Span.SPAN_KIND_CONSUMER}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with Daemon(BASE_CONFIG, workdir=tmp_path_factory.mktemp("zipkin"), overlay=OVERLAY) as running:
        yield running


def stored(daemon: Daemon, span_ids: set[str]) -> dict[str, list[dict]]:
    """Every stored copy of the spans `span_ids`, once all of them were written."""
    path = Path(daemon.dir) / "spans.jsonl"

    def found():
        out = spans_out(read_json_lines(path))
        return out if span_ids <= out.keys() else None

    out = wait_until(found, message="the spans in the file exporter's output")
    return {span_id: out[span_id] for span_id in span_ids}


def accepted(daemon: Daemon) -> float:
    return daemon.metric("otelcol_receiver_accepted_spans_total", receiver="zipkin", transport="http")


class Recording(SimpleHTTPTransport):
    """py_zipkin's own HTTP transport, keeping each payload it posted (what went in)."""

    def __init__(self, port: int) -> None:
        super().__init__("127.0.0.1", port)
        self.payloads: list[bytes] = []

    def send(self, payload) -> None:
        self.payloads.append(payload if isinstance(payload, bytes) else payload.encode())
        super().send(payload)  # asserts Zipkin's 202 Accepted


def pyzipkin_trace(transport: Recording, encoding: Encoding, use_128bit: bool) -> None:
    """A server span that joins a caller's trace (shared), a DB client child that failed
    (`error` tag) with its remote endpoint, a producer child; tags and annotations."""
    trace_id = os.urandom(16 if use_128bit else 8).hex()
    caller = ZipkinAttrs(trace_id=trace_id, span_id=os.urandom(8).hex(), parent_span_id=None, flags="0", is_sampled=True)
    with zipkin_span(service_name="checkout", span_name="POST /orders", zipkin_attrs=caller,
                     transport_handler=transport, encoding=encoding, kind=Kind.SERVER, host="10.1.2.3",
                     port=8080, binary_annotations={"http.method": "POST", "order.items": "3"}) as server:
        server.add_annotation("validated")
        with zipkin_span(service_name="checkout", span_name="INSERT orders", kind=Kind.CLIENT,
                         binary_annotations={"db.system": "postgresql", "error": "true"}) as db:
            db.add_sa_binary_annotation(port=5432, service_name="postgres", host="10.9.9.9")
            db.add_annotation("retrying")
        with zipkin_span(service_name="checkout", span_name="publish order", kind=Kind.PRODUCER,
                         binary_annotations={"messaging.system": "kafka"}):
            pass


def payload_spans(payloads: list[bytes], encoding: Encoding) -> list[dict]:
    """The payloads' spans as Zipkin's v2 JSON dicts (protobuf read with py_zipkin's own classes)."""
    if encoding == Encoding.V2_JSON:
        return [span for payload in payloads for span in json.loads(payload)]
    out = []
    for payload in payloads:
        for span in pyzipkin_pb2.ListOfSpans.FromString(payload).spans:
            ends = {"local": span.local_endpoint, "remote": span.remote_endpoint}
            out.append({
                "traceId": span.trace_id.hex(), "id": span.id.hex(), "parentId": span.parent_id.hex() or None,
                "kind": pyzipkin_pb2.Span.Kind.Name(span.kind), "name": span.name, "timestamp": span.timestamp,
                "duration": span.duration, "tags": dict(span.tags), "shared": span.shared,
                "annotations": [{"timestamp": a.timestamp, "value": a.value} for a in span.annotations],
                **{f"{k}Endpoint": {"serviceName": e.service_name, "port": e.port,
                                    "ipv4": ".".join(str(b) for b in e.ipv4)} for k, e in ends.items()
                   if span.HasField(f"{k}_endpoint")}})
    return out


@pytest.mark.parametrize("encoding, use_128bit", [(Encoding.V2_JSON, False), (Encoding.V2_PROTO3, True)],
                         ids=["json-64bit-trace", "protobuf-128bit-trace"])
def test_py_zipkin_spans_arrive_span_by_span(daemon, encoding, use_128bit):
    transport = Recording(ZIPKIN)
    pyzipkin_trace(transport, encoding, use_128bit)
    sent = payload_spans(transport.payloads, encoding)
    assert {s["kind"] for s in sent} == {"SERVER", "CLIENT", "PRODUCER"} and len(sent) == 3
    out = stored(daemon, {s["id"] for s in sent})
    for z in sent:
        [got] = out[z["id"]]
        where = f"{encoding.name} span {z['name']!r}"
        assert got["trace_id"] == z["traceId"].rjust(32, "0"), where
        assert len(z["traceId"]) == (32 if use_128bit else 16), where
        assert got["parent_span_id"] == (z.get("parentId") or ""), where
        assert (got["name"], got["kind"]) == (z["name"], KINDS[z["kind"]]), where
        assert got["start"] == z["timestamp"] * 1000, where
        assert got["end"] == (z["timestamp"] + z["duration"]) * 1000, where
        assert got["resource"] == {"service.name": "checkout"}, where
        assert got["events"] == [(a["value"], a["timestamp"] * 1000, {}) for a in z.get("annotations", [])], where
        tags = {k: v for k, v in z["tags"].items() if k != "error"}
        assert {k: got["attributes"][k] for k in tags} == tags, where
        failed = z["tags"].get("error") == "true"
        assert got["status"] == ((Status.STATUS_CODE_ERROR, "") if failed else (Status.STATUS_CODE_UNSET, "")), where
        assert "error" not in got["attributes"], where
        remote = z.get("remoteEndpoint")
        if remote:
            assert got["attributes"]["peer.service"] == remote["serviceName"], where
            assert got["attributes"]["net.peer.ip"] == remote["ipv4"], where
            assert got["attributes"]["net.peer.port"] == remote["port"], where
    by_name = {z["name"]: z for z in sent}
    server, db = by_name["POST /orders"], by_name["INSERT orders"]
    assert server["shared"] is True and out[server["id"]][0]["attributes"]["zipkin.shared"] is True
    assert out[server["id"]][0]["attributes"]["net.host.ip"] == "10.1.2.3"
    assert out[server["id"]][0]["attributes"]["net.host.port"] == 8080
    assert out[db["id"]][0]["status"][0] == Status.STATUS_CODE_ERROR
    assert out[db["id"]][0]["attributes"]["net.peer.ip"] == "10.9.9.9"


def usec(ns: int) -> int:
    """The OTel Zipkin exporter's rounding of ns to µs."""
    return (ns + 500) // 1000


def test_opentelemetry_zipkin_json_exporter_spans_arrive_span_by_span(daemon):
    spans = agent_run({"gen_ai.agent.name": "planner", "session.id": "s-42"})
    exporter = ZipkinExporter(endpoint=URL, local_node_ipv4="10.0.0.7", local_node_port=9000)
    assert exporter.export(spans).name == "SUCCESS"
    want = expected_from_sdk(spans)
    out = stored(daemon, set(want))
    for span_id, w in want.items():
        [got] = out[span_id]
        where = f"span {w['name']!r}"
        for key in ("trace_id", "span_id", "parent_span_id", "name"):
            assert got[key] == w[key], (where, key)
        # Zipkin has no INTERNAL kind: the exporter sends none, which otelcol reads as UNSPECIFIED.
        assert got["kind"] == (Span.SPAN_KIND_UNSPECIFIED if w["kind"] == Span.SPAN_KIND_INTERNAL else w["kind"]), where
        assert got["start"] == usec(w["start"]) * 1000, where
        assert got["end"] == (usec(w["start"]) + usec(w["end"] - w["start"])) * 1000, where
        # Tags are strings on the wire (the exporter writes booleans lower case).
        tags = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in w["attributes"].items()}
        assert got["attributes"] == {**tags, "net.host.ip": "10.0.0.7", "net.host.port": 9000}, where
        # Annotations carry the event's attributes as JSON: they come back typed.
        assert got["events"] == [(name, usec(t) * 1000, attrs) for name, t, attrs in w["events"]], where
        assert got["status"] == w["status"], where
        assert got["resource"] == {k: str(v) for k, v in w["resource"].items()}, where
        assert got["scope"][:2] == w["scope"][:2], where
    assert {got[0]["status"][0] for got in out.values()} >= {Status.STATUS_CODE_ERROR, Status.STATUS_CODE_OK}


GOOD = [{"traceId": "5af7183fb1d4cf5f", "id": "6b221d5bc9e6496c", "name": "get /api", "kind": "SERVER",
         "timestamp": 1_700_000_000_000_000, "duration": 1500, "localEndpoint": {"serviceName": "api"}}]


def post(body: bytes, url: str = URL, **headers: str) -> requests.Response:
    return requests.post(url, data=body, headers={"Content-Type": "application/json", **headers}, timeout=10)


def test_gzip_body_is_accepted(daemon):
    span = {**GOOD[0], "id": "00000000000000a1"}
    response = post(gzip.compress(json.dumps([span]).encode()), **{"Content-Encoding": "gzip"})
    assert response.status_code == 202, response.text
    [got] = stored(daemon, {"00000000000000a1"})["00000000000000a1"]
    assert got["resource"] == {"service.name": "api"} and got["end"] - got["start"] == 1_500_000


def test_a_large_body_is_translated_whole(daemon):
    """Over 256 KiB the translation runs in a thread: every span still arrives, once."""
    spans = [{**GOOD[0], "traceId": os.urandom(16).hex(), "id": os.urandom(8).hex(),
              "tags": {"padding": "x" * 200}} for _ in range(2000)]
    body = json.dumps(spans).encode()
    assert 256 * 1024 < len(body) < LIMIT
    assert post(body).status_code == 202
    out = stored(daemon, {s["id"] for s in spans})
    assert all(len(copies) == 1 for copies in out.values()) and len(out) == len(spans)


BAD_JSON = {
    "malformed": (b'[{"traceId": "5af7183fb1d4cf5f", "id": ', "not a list of Zipkin v2 spans"),
    "not-a-list": (b'{"traceId": "5af7183fb1d4cf5f"}', "body: Input should be a valid array"),
    "tag-not-a-string": (json.dumps([{**GOOD[0], "tags": {"http.status_code": 200}}]).encode(), "[0].tags.http.status_code"),
    "timestamp-a-string": (json.dumps([{**GOOD[0], "timestamp": "yesterday"}]).encode(), "[0].timestamp"),
    "trace-id-not-hex": (json.dumps([{**GOOD[0], "traceId": "xyz"}]).encode(), "[0].traceId"),
    "span-id-too-long": (json.dumps([{**GOOD[0], "id": "1" * 17}]).encode(), "[0].id"),
    "negative-duration": (json.dumps([{**GOOD[0], "duration": -5}]).encode(), "[0].duration"),
    "bad-ipv4": (json.dumps([{**GOOD[0], "localEndpoint": {"ipv4": "300.1.1.1"}}]).encode(), "ipv4"),
}


@pytest.mark.parametrize("name", list(BAD_JSON))
def test_bad_json_is_400_with_the_reason_and_the_daemon_keeps_taking_spans(daemon, name):
    body, reason = BAD_JSON[name]
    before = daemon.metric("agentdbg_receiver_rejected_requests_total", receiver="zipkin", reason="malformed")
    response = post(body)
    assert response.status_code == 400, response.text
    assert reason in response.text, response.text
    assert daemon.metric("agentdbg_receiver_rejected_requests_total", receiver="zipkin",
                         reason="malformed") == before + 1
    assert post(json.dumps(GOOD).encode()).status_code == 202  # still alive, still taking spans


def test_bad_protobuf_is_400(daemon):
    wrong_ids = pyzipkin_pb2.ListOfSpans(spans=[pyzipkin_pb2.Span(trace_id=b"\1" * 16, id=b"\2" * 5)])
    for body, reason in ((b"\xff\xff\xff", "not a Zipkin ListOfSpans"),
                         (wrong_ids.SerializeToString(), "id 8 bytes")):
        response = post(body, **{"Content-Type": "application/x-protobuf"})
        assert response.status_code == 400 and reason in response.text, response.text


def test_other_refusals_415_413_405_and_v1_404(daemon):
    assert post(b"x", **{"Content-Type": "application/x-thrift"}).status_code == 415
    too_big = post(json.dumps(GOOD).encode() + b" " * LIMIT)
    assert too_big.status_code == 413 and "limit" in too_big.text
    bomb = post(gzip.compress(b"[" + b" " * (LIMIT * 8) + b"]"), **{"Content-Encoding": "gzip"})
    assert bomb.status_code == 413, bomb.text
    assert post(b"\x1f\x8b garbage", **{"Content-Encoding": "gzip"}).status_code == 400
    assert requests.get(URL, timeout=10).status_code == 405
    v1 = post(b"[]", url=f"http://127.0.0.1:{ZIPKIN}/api/v1/spans")
    assert v1.status_code == 404 and "/api/v2/spans" in v1.text
    before = accepted(daemon)
    assert post(json.dumps(GOOD).encode()).status_code == 202
    wait_until(lambda: accepted(daemon) == before + 1, message="the good span counted as accepted")


def test_a_refusing_pipeline_answers_503_with_retry_after(daemon):
    url = f"http://127.0.0.1:{REFUSING}/api/v2/spans"

    def refused():
        response = post(json.dumps(GOOD).encode(), url=url)
        assert response.status_code in (202, 503, 429), response.text
        return [response] if response.status_code != 202 else None  # a list: a 503 Response is falsy

    [response] = wait_until(refused, message="the full queue refusing a request")
    assert int(response.headers["Retry-After"]) >= 1
    assert daemon.metric("otelcol_receiver_refused_spans_total", receiver="zipkin/refusing", transport="http") >= 1


def test_the_daemon_loads_beside_other_zipkin_protobuf_bindings():
    """Zipkin's own proto names in the receiver's bindings clashed in protobuf's default pool
    with py_zipkin's (or the OTel exporter's) in one process: building the registry failed."""
    code = ("from py_zipkin.encoding.protobuf import zipkin_pb2\n"
            "from pipeline.registry import factories\n"
            "assert 'zipkin' in {t for table in factories().values() for t in table}\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                      max_size=3), max_leaves=8)
FIELDS = ["parentId", "kind", "name", "timestamp", "duration", "localEndpoint",
          "remoteEndpoint", "annotations", "tags", "debug", "shared"]
HEX = st.text("0123456789abcdef", min_size=1, max_size=32)
POISON_SPANS = st.lists(st.fixed_dictionaries(
    {"traceId": HEX | JSON_VALUES, "id": HEX | JSON_VALUES}, optional={key: JSON_VALUES | HEX for key in FIELDS}), max_size=4)


@settings(deadline=None)
@given(spans=POISON_SPANS)
def test_poison_json_is_either_translated_whole_or_refused_with_a_reason(spans):
    """Any JSON body: BadSpans (the 400) or one OTLP request holding every span, never another error."""
    from receivers.zipkin.translate import BadSpans, from_json, to_otlp

    try:
        decoded = from_json(json.dumps(spans).encode())
    except BadSpans as exc:
        assert "not a list of Zipkin v2 spans" in str(exc)
        return
    request = to_otlp(decoded, parse_string_tags=True)
    assert sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans) == len(spans)
    assert request.SerializeToString() is not None


@settings(deadline=None)
@given(body=st.binary(max_size=200))
def test_poison_protobuf_is_either_translated_or_refused_with_a_reason(body):
    from receivers.zipkin.translate import BadSpans, from_proto, to_otlp

    try:
        decoded = from_proto(body)
    except BadSpans:
        return
    assert to_otlp(decoded).SerializeToString() is not None


def test_tls_endpoint_serves_the_zipkin_exporter_over_https(tmp_path, monkeypatch):
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's CA file (psf/requests#3829).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([require_binary("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    port = free_port()
    overlay = f"""
receivers:
  zipkin:
    endpoint: 127.0.0.1:{port}
    tls: {{cert_file: {cert}, key_file: {key}}}
exporters:
{file_exporter()}
service:
  pipelines:
    traces: {{receivers: [zipkin], exporters: [file]}}
"""
    spans = agent_run({"gen_ai.agent.name": "tls"})
    with Daemon(BASE_CONFIG, workdir=tmp_path, overlay=overlay) as running:
        session = requests.Session()
        session.verify = str(cert)
        exporter = ZipkinExporter(endpoint=f"https://localhost:{port}/api/v2/spans", session=session)
        assert exporter.export(spans).name == "SUCCESS"
        assert set(stored(running, set(expected_from_sdk(spans)))) == set(expected_from_sdk(spans))
        with pytest.raises(requests.exceptions.ConnectionError):  # no plain HTTP on a TLS endpoint
            requests.post(f"http://127.0.0.1:{port}/api/v2/spans", data=b"[]", timeout=5)

"""Acceptance 3: a full queue turns into retryable refusals, and nothing accepted is lost.

The daemon A forwards to B, a real OTLP backend: Jaeger v2 (testkit/jaeger.py, the test run's
one instance), through otlp receiver → batch → otlphttp exporter with a 2-batch sending
queue, one consumer, 1 s timeout and retries forever. B is frozen with SIGSTOP, the way an
unreachable backend looks from A (its kernel still takes connections, nothing answers).
A client then posts to A by hand and sees each answer: once A's queue is full, HTTP 503/429 with Retry-After and gRPC
UNAVAILABLE/RESOURCE_EXHAUSTED with RetryInfo, all counted in A's
`otelcol_receiver_refused_spans_total`. After SIGCONT the client retries what was refused
until A takes it, and B then holds exactly the spans A accepted (read back through Jaeger's
query API, by this test's service name): none lost, duplicates (a request B got after A's
attempt had timed out) allowed and counted.
"""
from __future__ import annotations

import os
import time

import grpc
import pytest
import requests
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from testkit.harness import BASE_CONFIG, Daemon, pipeline_overlay, wait_until
from testkit.jaeger import Jaeger
from testkit.otlp_spans import span_ids

FORWARDER = pipeline_overlay("""
  otlphttp:
    endpoint: SINK_URL
    compression: none
    timeout: 1s
    sending_queue:
      queue_size: 2
      num_consumers: 1
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
      max_elapsed_time: 0
""")
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SPANS_PER_REQUEST = 5
SERVICE = "backpressure-agent"  # named for this test: Jaeger serves the whole test run


def make_request() -> tuple[bytes, list[str]]:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = SERVICE
    scope = rs.scope_spans.add()
    now = time.time_ns()
    ids = []
    for _ in range(SPANS_PER_REQUEST):
        span_id = os.urandom(8)
        scope.spans.add(trace_id=os.urandom(16), span_id=span_id, name="queued",
                        start_time_unix_nano=now, end_time_unix_nano=now + 1)
        ids.append(span_id.hex())
    return request.SerializeToString(), ids


def retry_info(error: grpc.RpcError) -> error_details_pb2.RetryInfo | None:
    details = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
    if details is None:
        return None
    for detail in status_pb2.Status.FromString(details).details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info
    return None


def sink_ids(jaeger: Jaeger) -> list[str]:
    """Span id of every copy of a span of this test's service that Jaeger stored."""
    return span_ids(jaeger.service_spans(SERVICE))


@pytest.fixture
def forwarder(jaeger, tmp_path):
    (tmp_path / "forwarder").mkdir()
    with Daemon(BASE_CONFIG, workdir=tmp_path / "forwarder",
                overlay=FORWARDER.replace("SINK_URL", jaeger.http_url)) as running:
        yield running


def test_full_queue_refuses_retryably_and_loses_nothing(jaeger, forwarder):
    url = f"http://127.0.0.1:{forwarder.ports['http']}/v1/traces"
    headers = {"Content-Type": "application/x-protobuf"}
    session = requests.Session()
    accepted: list[str] = []
    refused: list[tuple[bytes, list[str]]] = []

    # The path works while B is up.
    body, ids = make_request()
    assert session.post(url, data=body, headers=headers, timeout=10).status_code == 200
    accepted += ids
    wait_until(lambda: set(ids) <= set(sink_ids(jaeger)), timeout=15, message="spans forwarded to Jaeger")

    channel = grpc.insecure_channel(f"127.0.0.1:{forwarder.ports['grpc']}")
    export = channel.unary_unary(EXPORT)  # raw bytes in and out
    jaeger.pause()
    try:
        # Fill A: one batch stuck in the consumer, two queued, one held by the batch processor.
        deadline = time.monotonic() + 30
        while len(refused) < 3 and time.monotonic() < deadline:
            body, ids = make_request()
            response = session.post(url, data=body, headers=headers, timeout=10)
            if response.status_code == 200:
                accepted += ids
            else:
                assert response.status_code in (503, 429), (response.status_code, response.content)
                assert int(response.headers["Retry-After"]) >= 1
                status = status_pb2.Status.FromString(response.content)
                assert status.message
                refused.append((body, ids))
            time.sleep(0.02)
        assert len(refused) >= 3, "the forwarder never refused while its destination was down"

        body, ids = make_request()
        with pytest.raises(grpc.RpcError) as caught:
            export(body, timeout=10)
        assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
        info = retry_info(caught.value)
        assert info is not None, "no RetryInfo in grpc-status-details-bin"
        assert info.retry_delay.seconds >= 1
        grpc_refused = [(body, ids)]

        refused_spans = SPANS_PER_REQUEST * (len(refused) + len(grpc_refused))
        assert forwarder.metric("otelcol_receiver_refused_spans_total") == refused_spans
        assert forwarder.metric("otelcol_receiver_refused_spans_total", transport="grpc") == SPANS_PER_REQUEST
        assert forwarder.metric("otelcol_exporter_enqueue_failed_spans_total", exporter="otlphttp") > 0
        assert forwarder.metric("otelcol_exporter_queue_size", exporter="otlphttp") == 2
        # Stay down until A's send attempt has timed out and been retried at least once.
        wait_until(lambda: forwarder.metric("agentdbg_exporter_retried_requests_total", exporter="otlphttp") > 0,
                   timeout=15, interval=0.1, message="the forwarder to time out and retry")
    finally:
        jaeger.resume()

    # B is back: what was refused is retried, as a client honouring the refusal would.
    def retry_http(body: bytes) -> bool:
        return session.post(url, data=body, headers=headers, timeout=10).status_code == 200

    def retry_grpc(body: bytes) -> bool:
        try:
            export(body, timeout=10)
            return True
        except grpc.RpcError as error:
            assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
            return False

    for retry, pending in ((retry_http, refused), (retry_grpc, grpc_refused)):
        for body, ids in pending:
            wait_until(lambda: retry(body), timeout=30, interval=0.2, message="a refused request to be accepted")
            accepted += ids
    channel.close()

    wait_until(lambda: set(accepted) <= set(sink_ids(jaeger)), timeout=30,
               message="every accepted span in Jaeger")
    wait_until(lambda: forwarder.metric("otelcol_exporter_sent_spans_total", exporter="otlphttp") == len(accepted),
               timeout=15, message="the forwarder's queue to drain")
    at_sink = sink_ids(jaeger)
    duplicates = len(at_sink) - len(set(at_sink))
    # Duplicates are allowed (at-least-once): a request B read after A's attempt had timed out.
    print(f"accepted={len(accepted)} refused_requests={len(refused) + 1} at_sink={len(at_sink)} "
          f"duplicates={duplicates}")
    assert len(set(accepted)) == len(accepted)
    assert set(at_sink) == set(accepted)  # nothing lost, nothing invented
    assert forwarder.metric("otelcol_receiver_accepted_spans_total") == len(accepted) == len(set(at_sink))
    assert forwarder.metric("otelcol_exporter_send_failed_spans_total", exporter="otlphttp") == 0

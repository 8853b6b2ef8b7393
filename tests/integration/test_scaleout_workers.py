"""`service.workers: 2` (pipeline/workers.py): two processes behind the same OTLP ports.

What a user checks: every span sent, over many connections on both transports, is delivered
exactly once (each worker writes its own file), both workers took a share, one /metrics
answers for both with a `worker` label, SIGTERM drains both and exits 0; a config whose state
cannot be split across processes is refused by `validate` with the reason.
"""
from __future__ import annotations

import grpc
import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from testkit.harness import BASE_CONFIG, Daemon, file_exporter, metric_value, pipeline_overlay, wait_until
from testkit.otlp_spans import read_json_lines, span_ids
from testkit.trigger_helpers import resource, span

WORKERS = "service:\n  workers: 2\n"
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def request(n: int) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    message.resource_spans.append(resource("workers-agent", [span(f"op-{n}-{i}", trace=n) for i in range(10)]))
    return message


def delivered(daemon: Daemon) -> dict[int, list[str]]:
    out = {}
    for worker in (0, 1):
        path = daemon.dir / f"spans.worker-{worker}.jsonl"
        out[worker] = span_ids(read_json_lines(path)) if path.exists() else []
    return out


def both_up(daemon: Daemon) -> bool:
    try:
        text = daemon.metrics_text()
    except requests.RequestException:
        return False
    return all(metric_value(text, "agentdbg_worker_up", worker=str(w)) == 1 for w in (0, 1))


@pytest.fixture
def workers():
    with Daemon(BASE_CONFIG, overlay=[pipeline_overlay(file_exporter()), WORKERS]) as daemon:
        wait_until(lambda: both_up(daemon), timeout=60, message="both workers' metrics")
        yield daemon


def test_two_workers_deliver_every_span_once_and_report_on_one_metrics_endpoint(workers):
    sent: list[str] = []
    for n in range(1, 41):  # a new connection per request: the kernel spreads connections, not requests
        message = request(n)
        sent += span_ids([message])
        response = requests.post(f"http://127.0.0.1:{workers.ports['http']}/v1/traces",
                                 data=message.SerializeToString(), timeout=10,
                                 headers={"Content-Type": "application/x-protobuf", "Connection": "close"})
        assert response.status_code == 200, response.text
    for n in range(41, 61):
        message = request(n)
        sent += span_ids([message])
        with grpc.insecure_channel(f"127.0.0.1:{workers.ports['grpc']}") as channel:
            channel.unary_unary(EXPORT)(message.SerializeToString(), timeout=10)
    wait_until(lambda: sum(map(len, delivered(workers).values())) >= len(sent), timeout=30,
               message="every span in the workers' files")
    found = delivered(workers)
    everything = found[0] + found[1]
    assert sorted(everything) == sorted(sent), "each span exactly once across the workers"
    assert found[0] and found[1], f"both workers took connections: {[len(v) for v in found.values()]}"
    text = workers.metrics_text()
    per_worker = [metric_value(text, "otelcol_receiver_accepted_spans_total", worker=str(w)) for w in (0, 1)]
    assert per_worker == [len(found[0]), len(found[1])]
    assert workers.stop() == 0


REFUSED = """
connectors:
  triggers: {}
exporters:
  chdb: {path: "{dir}/chdb"}
service:
  workers: 2
  pipelines:
    traces: {receivers: [otlp], exporters: [chdb, triggers]}
    events: {receivers: [triggers], exporters: [chdb]}
"""


def test_a_config_with_per_process_state_is_refused_with_workers():
    result = Daemon(BASE_CONFIG, overlay=REFUSED).validate()
    assert result.returncode == 1
    assert ("service::workers: 2 cannot run connectors::triggers: its detectors keep their windows per "
            "process") in result.stderr
    assert "config/evaluator.yaml" in result.stderr
    assert "service::workers: 2 cannot run exporters::chdb" in result.stderr

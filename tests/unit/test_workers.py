"""`service.workers` (pipeline/workers.py) without processes: what each worker's config holds, and
the one /metrics the supervisor makes of the workers' own."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from pipeline.component import ComponentID, Kind
from pipeline.config.loader import load_with_origins
from pipeline.config.resolve import resolve
from pipeline.registry import factories
from pipeline.workers import Worker, for_worker, render

CONFIG = """
receivers:
  otlp:
    protocols: {grpc: {endpoint: "127.0.0.1:4317"}, http: {endpoint: "127.0.0.1:4318"}}
processors:
  memory_limiter: {check_interval: 1s, limit_mib: 1000, spike_limit_mib: 200}
exporters:
  file: {path: /data/spans.jsonl, sending_queue: {storage: file_storage}}
extensions:
  file_storage: {directory: /data/queue}
  health_check: {endpoint: "127.0.0.1:13133"}
service:
  workers: 2
  extensions: [file_storage, health_check]
  pipelines:
    traces: {receivers: [otlp], processors: [memory_limiter], exporters: [file]}
"""


def config(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    raw, origins = load_with_origins([str(path)])
    return resolve(raw, factories(), origins)


def model(resolved, kind, cid):
    return resolved.section(kind)[ComponentID.parse(cid)].config


def test_each_worker_shares_the_ports_and_keeps_its_own_files_and_memory_share(tmp_path):
    base = config(tmp_path)
    first, second = for_worker(base, 0, 2, "127.0.0.1:9001"), for_worker(base, 1, 2, "127.0.0.1:9002")
    for worker in (first, second):
        protocols = model(worker, Kind.RECEIVER, "otlp").protocols
        assert protocols.grpc.reuse_port and protocols.http.reuse_port
        assert protocols.grpc.endpoint == "127.0.0.1:4317"
        limiter = model(worker, Kind.PROCESSOR, "memory_limiter")
        assert (limiter.limit_mib, limiter.spike_limit_mib) == (500, 100)
    assert model(first, Kind.EXTENSION, "file_storage").directory == "/data/queue/worker-0"
    assert model(second, Kind.EXPORTER, "file").path == "/data/spans.worker-1.jsonl"
    assert first.service.extensions == ["file_storage", "health_check"]
    assert second.service.extensions == ["file_storage"], "the health endpoint is worker 0's"
    assert second.service.telemetry.metrics.address == "127.0.0.1:9002"
    assert not model(base, Kind.RECEIVER, "otlp").protocols.grpc.reuse_port, "the base config is unchanged"


def test_one_exposition_labels_every_worker_sample():
    text = ('# HELP otelcol_receiver_accepted_spans_total Spans.\n'
            '# TYPE otelcol_receiver_accepted_spans_total counter\n'
            'otelcol_receiver_accepted_spans_total{receiver="otlp"} %d\n')
    workers = [Worker(0, "a"), Worker(1, "b")]
    workers[0].up, workers[1].restarts = True, 2
    families = {f.name: f for f in text_string_to_metric_families(render({0: text % 3, 1: text % 4}, workers).decode())}
    spans = families["otelcol_receiver_accepted_spans"].samples
    assert {(s.labels["worker"], s.value) for s in spans} == {("0", 3.0), ("1", 4.0)}
    assert {s.labels["worker"]: s.value for s in families["agentdbg_worker_up"].samples} == {"0": 1.0, "1": 0.0}
    restarts = {s.labels["worker"]: s.value for s in families["agentdbg_worker_restarts"].samples
                if s.name.endswith("_total")}
    assert restarts == {"0": 0.0, "1": 2.0}

"""The `file` exporter's rotation and the `debug` exporter's verbosity, through a running daemon."""
from __future__ import annotations

import asyncio

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from testkit.fleet import Fleet
from testkit.loadgen import post_http
from pipeline import otlp_json
from pipeline.pdata.traces import count_spans
from testkit.harness import BASE_CONFIG, Daemon, wait_until

ROTATING = """
exporters:
  file:
    path: "{dir}/out/spans.jsonl"
    flush_interval: 50ms
    rotation: {max_megabytes: 1, max_backups: 2}
  debug:
    verbosity: detailed
    sampling_initial: 1000
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [file, debug]}
"""


def test_rotation_keeps_max_backups_with_the_newest_lines_whole_and_in_order(tmp_path):
    fleet = Fleet(seed=11)
    requests = [fleet.request(40) for _ in range(12)]  # each ~120 KB of OTLP/JSON
    total = sum(count_spans(r) for r in requests)
    with Daemon(BASE_CONFIG, workdir=tmp_path, overlay=ROTATING) as daemon:
        asyncio.run(post_http(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces",
                              [r.SerializeToString() for r in requests], concurrency=1))
        wait_until(lambda: daemon.metric("otelcol_exporter_sent_spans_total", exporter="file") == total,
                   message="every span written")
    files = sorted((tmp_path / "out").iterdir())
    current = tmp_path / "out" / "spans.jsonl"
    backups = [f for f in files if f != current]
    assert current in files and len(backups) == 2, [f.name for f in files]
    assert all(f.name.startswith("spans-") and f.suffix == ".jsonl" for f in backups)
    assert all(f.stat().st_size <= 1024 * 1024 for f in files)
    # The newest files hold the newest requests, whole lines, in order.
    lines = [line for f in [*backups, current] for line in f.read_bytes().splitlines()]
    kept = [otlp_json.decode(line, ExportTraceServiceRequest) for line in lines]
    assert kept == requests[-len(kept):]


def test_debug_exporter_detailed_logs_every_span(tmp_path):
    request = Fleet(seed=12).request(2)
    with Daemon(BASE_CONFIG, workdir=tmp_path, overlay=ROTATING) as daemon:
        asyncio.run(post_http(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces", [request.SerializeToString()]))
        wait_until(lambda: daemon.log().count("msg=span ") >= count_spans(request), message="span lines")
        log = daemon.log()
    first = request.resource_spans[0].scope_spans[0].spans[0]
    assert f"trace_id={first.trace_id.hex()}" in log and f"span_id={first.span_id.hex()}" in log
    assert "msg=Traces resource_spans=" in log

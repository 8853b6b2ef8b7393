"""A persistent sending queue (`file_storage`) keeps accepted spans across a SIGKILL."""
from __future__ import annotations

import asyncio
import json
import signal

from testkit.fleet import Fleet
from testkit.loadgen import post_http
from pipeline.pdata.traces import count_spans
from testkit.harness import BASE_CONFIG, Daemon, wait_until

SINK = """
exporters:
  file: {path: "{dir}/sink.jsonl", flush_interval: 50ms}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [file]}
"""

FORWARDER = """
extensions:
  file_storage: {{directory: "{queue}"}}
exporters:
  otlphttp:
    endpoint: {sink}
    timeout: 500ms
    sending_queue: {{storage: file_storage, queue_size: 100, num_consumers: 2}}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 0}}
service:
  extensions: [health_check, debug_api, file_storage]
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlphttp]}}
"""


def span_ids(path) -> list[str]:
    ids = []
    for line in path.read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            for scope in rs["scopeSpans"]:
                ids.extend(span["spanId"] for span in scope["spans"])
    return ids


def test_spans_accepted_before_a_sigkill_are_delivered_after_the_restart(tmp_path):
    requests = [Fleet(seed=21).request(10) for _ in range(8)]
    expected = {span.span_id.hex() for r in requests for rs in r.resource_spans for s in rs.scope_spans
                for span in s.spans}
    sink = Daemon(BASE_CONFIG, workdir=tmp_path / "sink", overlay=SINK).start()
    overlay = FORWARDER.format(queue=tmp_path / "queue", sink=f"http://127.0.0.1:{sink.ports['http']}")
    try:
        sink.signal(signal.SIGSTOP)  # the destination hangs: everything stays queued
        forwarder = Daemon(BASE_CONFIG, workdir=tmp_path / "fwd", overlay=overlay).start()
        asyncio.run(post_http(f"http://127.0.0.1:{forwarder.ports['http']}/v1/traces",
                              [r.SerializeToString() for r in requests]))
        accepted = forwarder.metric("otelcol_receiver_accepted_spans_total")
        assert accepted == sum(count_spans(r) for r in requests)
        forwarder.signal(signal.SIGKILL)
        forwarder.proc.wait(10)
        assert len(list((tmp_path / "queue").rglob("*.batch"))) == len(requests)

        sink.signal(signal.SIGCONT)
        restarted = Daemon(BASE_CONFIG, workdir=tmp_path / "fwd2", overlay=overlay)
        with restarted:
            wait_until(lambda: expected <= set(span_ids(tmp_path / "sink" / "sink.jsonl")), timeout=30,
                       message="every span accepted before the kill reached the sink")
            wait_until(lambda: not list((tmp_path / "queue").rglob("*.batch")), message="queue files removed")
        assert "sending what an earlier run left in the queue" in restarted.log()
    finally:
        sink.signal(signal.SIGCONT)
        sink.stop()

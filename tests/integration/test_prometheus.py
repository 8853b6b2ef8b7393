"""Acceptance 5: the daemon's own telemetry as an operator consumes it.

A real Prometheus (Debian's `prometheus`) scrapes the daemon's metrics port every second;
after N spans the query `otelcol_receiver_accepted_spans_total` says N. `promtool check
metrics` finds nothing to complain about in the scrape. The health endpoints answer what
otelcol's health_check answers.
"""
from __future__ import annotations

import json
import subprocess
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest
import requests
from opentelemetry.sdk.resources import Resource

from tests.conftest import require_binary
from testkit.harness import BASE_CONFIG, Daemon, file_exporter, free_port, pipeline_overlay, wait_until
from testkit.otlp_spans import export_spans, otlp_exporter, sdk_provider

GRPC_SPANS, HTTP_SPANS = 25, 12
N = GRPC_SPANS + HTTP_SPANS


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with Daemon(BASE_CONFIG, workdir=tmp_path_factory.mktemp("metrics"),
                overlay=pipeline_overlay(file_exporter())) as running:
        yield running


@pytest.fixture(scope="module")
def traffic(daemon):
    """N spans: some from the SDK's gRPC exporter, some posted as OTLP/JSON."""
    provider, memory = sdk_provider(Resource({"service.name": "metrics-agent"}))
    tracer = provider.get_tracer("prometheus-test")
    for i in range(GRPC_SPANS):
        tracer.start_span(f"step {i}").end()
    provider.shutdown()
    export_spans(otlp_exporter("grpc", daemon.ports["grpc"], timeout=10), memory.get_finished_spans())
    now = time.time_ns()
    spans = [{"traceId": f"{i + 1:032x}", "spanId": f"{i + 1:016x}", "name": f"json {i}",
              "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 1)} for i in range(HTTP_SPANS)]
    response = requests.post(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces", timeout=10,
                             json={"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]})
    assert response.status_code == 200
    return N


@contextmanager
def run_prometheus(targets: list[str], work: Path, scrape_interval: str = "1s") -> Iterator[str]:
    """Debian's `prometheus` on a free loopback port, scraping `targets` (job `agentdbg`); yields
    its base URL once ready, and stops it on exit."""
    binary = require_binary("prometheus")
    config = work / "prometheus.yml"
    config.write_text(f"""
global:
  scrape_interval: {scrape_interval}
  evaluation_interval: {scrape_interval}
scrape_configs:
  - job_name: agentdbg
    static_configs:
      - targets: {json.dumps(targets)}
""")
    port = free_port()
    log = open(work / "prometheus.log", "wb")
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"prometheus exited: {(work / 'prometheus.log').read_text()}")
        try:
            return requests.get(f"{base}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(ready, timeout=30, interval=0.2, message="prometheus ready")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def prometheus(daemon, tmp_path_factory):
    with run_prometheus([f"127.0.0.1:{daemon.ports['metrics']}"], tmp_path_factory.mktemp("prometheus")) as base:
        yield base


def query(base: str, expression: str) -> list[dict]:
    response = requests.get(f"{base}/api/v1/query", params={"query": expression}, timeout=5)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_accepted_spans(daemon, traffic, prometheus):
    def total() -> float | None:
        series = query(prometheus, "otelcol_receiver_accepted_spans_total")
        value = sum(float(s["value"][1]) for s in series)
        return series if value == traffic else None

    series = wait_until(total, timeout=30, interval=0.5, message=f"prometheus to report {traffic} accepted spans")
    by_transport = {s["metric"]["transport"]: float(s["value"][1]) for s in series}
    assert by_transport == {"grpc": GRPC_SPANS, "http": HTTP_SPANS}
    assert all(s["metric"]["receiver"] == "otlp" and s["metric"]["job"] == "agentdbg" for s in series)
    assert [float(s["value"][1]) for s in query(prometheus, 'up{job="agentdbg"}')] == [1.0]
    # What the pipeline passed on is visible too: every accepted span was written by the exporter.
    sent = wait_until(lambda: (v := sum(float(s["value"][1]) for s in query(
        prometheus, 'otelcol_exporter_sent_spans_total{exporter="file"}'))) == traffic and v,
        timeout=30, interval=0.5, message="exporter sent spans in prometheus")
    assert sent == traffic


def test_promtool_finds_no_problem_in_the_scrape(daemon, traffic):
    promtool = require_binary("promtool")
    wait_until(lambda: daemon.metric("otelcol_exporter_sent_spans_total", exporter="file") == traffic,
               timeout=10, message="the batch to be exported")
    text = daemon.metrics_text()
    for family in ("otelcol_receiver_accepted_spans_total", "otelcol_exporter_sent_spans_total",
                   "otelcol_exporter_queue_size", "otelcol_exporter_queue_capacity",
                   "otelcol_processor_batch_batch_send_size_bucket", "otelcol_process_memory_rss_bytes",
                   "otelcol_process_cpu_seconds_total"):
        assert f"\n{family}" in text, f"{family} missing from the scrape"
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr


def check_health_body(body: dict) -> None:
    assert body["status"] == "Server available"
    up_since = datetime.fromisoformat(body["upSince"].replace("Z", "+00:00"))
    assert up_since.tzinfo is not None
    assert up_since <= datetime.now(timezone.utc)
    # uptime is the time since upSince when the daemon answered: the two agree, to the request's latency
    since = (datetime.now(timezone.utc) - up_since).total_seconds()
    assert body["uptime"].endswith("s") and 0 < float(body["uptime"][:-1]) <= since + 0.01
    assert since - float(body["uptime"][:-1]) < 5


def test_health_check_endpoint(daemon):
    response = requests.get(f"http://127.0.0.1:{daemon.ports['health']}/", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    check_health_body(response.json())


def test_debug_health_endpoint(daemon):
    response = requests.get(f"http://127.0.0.1:{daemon.ports['debug']}/debug/health", timeout=5)
    assert response.status_code == 200
    body = response.json()
    check_health_body(body)
    same = requests.get(f"http://127.0.0.1:{daemon.ports['health']}/", timeout=5).json()
    assert body["upSince"] == same["upSince"]
    pipelines = requests.get(f"http://127.0.0.1:{daemon.ports['debug']}/debug/pipelines", timeout=5).json()
    assert pipelines["pipelines"]["traces"] == {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["file"]}
    assert requests.get(f"http://127.0.0.1:{daemon.ports['debug']}/debug/no-such-route", timeout=5).status_code == 404

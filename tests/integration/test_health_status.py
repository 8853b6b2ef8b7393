"""Issue 9, point 9: the health endpoint reports component status (health check v2 style).

A real otlphttp exporter points at a backend that is not listening yet (a Jaeger v2 of its
own, testkit/jaeger.py, whose ports are chosen but not bound). Spans sent by the OpenTelemetry SDK are queued and
retried; the exporter reports StatusRecoverableError. Two health_check extensions read the
same status with different `component_health` rules: `health_check/strict`
(recovery_duration 0s) turns 503 with the exporter's error; `health_check` (the default,
5 minutes) stays 200 but shows the error in `components`. When the backend comes up, the
retried batch is delivered, the exporter reports StatusOK and both answer 200 again.
Before the fix the health endpoint said "Server available" whatever the exporters did.
"""
from __future__ import annotations

import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource

from testkit.harness import BASE_CONFIG, Daemon, free_port, wait_until
from testkit.jaeger import Jaeger
from testkit.otlp_spans import sdk_provider, span_ids

OVERLAY = """
extensions:
  health_check/strict:
    endpoint: 127.0.0.1:{strict}
    component_health:
      include_recoverable_errors: true
      recovery_duration: 0s
exporters:
  otlphttp:
    endpoint: {backend}
    retry_on_failure: {{initial_interval: 50ms, max_interval: 200ms, max_elapsed_time: 0}}
service:
  extensions: [health_check, debug_api, health_check/strict]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlphttp]
"""


def get(port: int, path: str = "/") -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}{path}", timeout=2)


def exporter_status(body: dict) -> dict:
    return body["components"]["pipeline:traces"]["components"]["exporter:otlphttp"]


def test_health_turns_unhealthy_while_an_exporter_fails_and_back_when_it_recovers(tmp_path, jaeger_binary):
    backend = Jaeger(jaeger_binary, tmp_path / "jaeger")  # ports picked, nothing listening yet
    strict = free_port()
    overlay = OVERLAY.format(strict=strict, backend=backend.http_url)
    with Daemon(BASE_CONFIG, workdir=tmp_path, overlay=overlay) as daemon:
        health = daemon.ports["health"]
        assert get(strict).status_code == 200
        assert get(strict, "/?verbose").json()["components"]["pipeline:traces"]["status"] == "StatusOK"

        provider, made = sdk_provider(Resource.create({"service.name": "checkout"}),
                                      OTLPSpanExporter(endpoint=f"http://127.0.0.1:{daemon.ports['http']}/v1/traces"))
        tracer = provider.get_tracer("health-test")
        for index in range(5):
            with tracer.start_as_current_span(f"step {index}"):
                pass
        provider.shutdown()
        sent = {format(span.context.span_id, "016x") for span in made.get_finished_spans()}
        traces = {format(span.context.trace_id, "032x") for span in made.get_finished_spans()}
        assert len(sent) == 5

        failing = wait_until(lambda: [r for r in [get(strict, "/?verbose")] if r.status_code == 503], timeout=20,
                             message="the strict health check to turn 503")
        body = failing[0].json()
        assert body["status"] == "Server not available"
        pipeline = body["components"]["pipeline:traces"]
        assert pipeline["healthy"] is False and pipeline["status"] == "StatusRecoverableError"
        exporter = exporter_status(body)
        assert exporter["status"] == "StatusRecoverableError" and exporter["healthy"] is False
        assert "connect" in exporter["error"].lower(), exporter
        assert exporter["status_time"] and exporter["error_time"] >= exporter["status_time"]
        assert pipeline["components"]["receiver:otlp"]["status"] == "StatusOK"

        v2 = get(strict, "/status?verbose")
        assert v2.status_code == 503 and v2.json()["status"] == "StatusRecoverableError"
        assert exporter_status(v2.json())["status"] == "StatusRecoverableError"
        assert get(strict, "/status?pipeline=traces").json()["components"]["exporter:otlphttp"]["healthy"] is False

        debug = get(daemon.ports["debug"], "/debug/health")  # the debug API shows the same status
        assert exporter_status(debug.json())["status"] == "StatusRecoverableError"

        lenient = get(health, "/?verbose")  # default rule: 5 minutes of errors before unhealthy
        assert lenient.status_code == 200 and lenient.json()["status"] == "Server available"
        assert exporter_status(lenient.json())["status"] == "StatusRecoverableError"
        assert exporter_status(lenient.json())["healthy"] is True

        with backend:
            wait_until(lambda: get(strict).status_code == 200, timeout=20, message="the exporter to recover")
            assert exporter_status(get(strict, "/?verbose").json())["status"] == "StatusOK"
            assert get(strict, "/status").json() | {"start_time": None, "status_time": None} == {
                "start_time": None, "status_time": None, "healthy": True, "status": "StatusOK"}
            wait_until(lambda: sent <= set(span_ids(backend.traces(traces))), timeout=20,
                       message="every span delivered")
            assert sorted(span_ids(backend.traces(traces))) == sorted(sent)

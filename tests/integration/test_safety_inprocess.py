"""The safety processor in-process (config/default.yaml's shape): spans → triggers → safety →
a real Alertmanager, a webhook run by the test, and the debug API."""
from __future__ import annotations

import time

import pytest
import requests
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

from testkit.alertmanager import Alertmanager
from testkit.harness import BASE_CONFIG, Daemon, wait_until
from testkit.webhook_sink import WebhookSink

OVERLAY = """
connectors:
  triggers:
    evaluation_interval: 100ms
    resolve_after: 1s
    error_rate_spike: {{min_count: 20, window: 3s}}
processors:
  safety:
    state_file: "{{dir}}/safety.json"
    tick_interval: 100ms
    breakers:
      checkout_api:
        failure_threshold: 1
        timeout: 1s
        fallback: cached_checkout
        match: [{{kinds: [error_rate_spike], subject: {{service: checkout}}}}]
exporters:
  file/spans: {{path: "{{dir}}/spans.jsonl"}}
  webhook:
    endpoint: {hook}
    actions: [breaker_open, fallback, breaker_half_open, breaker_close]
    sending_queue: {{enabled: false}}
    retry_on_failure: {{initial_interval: 100ms}}
  alertmanager:
    endpoints: [{am}]
    resend_interval: 1s
    sending_queue: {{enabled: false}}
service:
  pipelines:
    traces: {{receivers: [otlp], exporters: [file/spans, triggers]}}
    events: {{receivers: [triggers], processors: [safety], exporters: [webhook, alertmanager]}}
"""


@pytest.fixture
def webhook():
    sink = WebhookSink().start()
    yield sink
    sink.stop()


def send_spans(port: int, service: str, count: int, failing: bool) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True), schedule_delay_millis=50))
    tracer = provider.get_tracer("checkout-agent")
    for index in range(count):
        with tracer.start_as_current_span("POST /checkout") as span:
            if failing and index % 2 == 0:
                span.set_status(Status(StatusCode.ERROR, "payment provider failed"))
    provider.shutdown()


def alert_names(am: Alertmanager) -> set[str]:
    return {a["labels"]["alertname"] for a in am.alerts() if a["status"]["state"] == "active"}


def test_error_spike_alerts_opens_breaker_then_recovers(alertmanager, webhook):
    overlay = OVERLAY.format(hook=webhook.url, am=alertmanager.url)
    with Daemon(BASE_CONFIG, overlay=overlay) as daemon:
        debug = f"http://127.0.0.1:{daemon.ports['debug']}/debug"
        send_spans(daemon.ports["grpc"], "checkout", 60, failing=True)

        wait_until(lambda: "error_rate_high" in alert_names(alertmanager), timeout=15,
                   message="error_rate_high active in Alertmanager")
        [alert] = [a for a in alertmanager.alerts() if a["labels"]["alertname"] == "error_rate_high"]
        assert alert["labels"]["service"] == "checkout" and alert["labels"]["severity"] == "critical"

        wait_until(lambda: requests.get(f"{debug}/breakers", timeout=2).json()["checkout_api"]["state"] != "closed",
                   timeout=10, message="breaker open")
        opened = [c["body"] for c in webhook.calls if c["body"]["action"] == "fallback"]
        assert opened and opened[0]["target"] == "checkout_api"
        assert opened[0]["state"]["fallback"] == "cached_checkout"

        # The errors stop: the episode resolves, the breaker half-opens then closes, the alert resolves.
        wait_until(lambda: "breaker_close" in [c["body"]["action"] for c in webhook.calls], timeout=20,
                   message="breaker closed after recovery")
        actions = [c["body"]["action"] for c in webhook.calls]
        assert actions.index("breaker_open") < actions.index("breaker_half_open") < actions.index("breaker_close")
        wait_until(lambda: "error_rate_high" not in alert_names(alertmanager), timeout=15,
                   message="alert resolved in Alertmanager")

        keys = webhook.keys()
        assert len(keys) == len(set(keys)), "no decision was posted twice"
        decisions = requests.get(f"{debug}/decisions", params={"since": "2000-01-01T00:00:00Z"}, timeout=2).json()
        assert {"alert", "resolve_alert", "breaker_open", "breaker_close"} <= {d["action"] for d in decisions}
        assert daemon.metric("agentdbg_safety_breaker_state", breaker="checkout_api") == 0

"""The webhook exporter's promises, against an HTTP server run by the test."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import pytest

from exporters.webhook import WebhookConfig, WebhookExporter
from pipeline.component import ComponentID, Kind, Settings
from pipeline.pdata.events import Events
from pipeline.host import Host
from pipeline.telemetry import metrics
from testkit.webhook_sink import WebhookSink


def decision(action: str, n: int) -> dict:
    return {"schema": "agentdbg.decision/v1", "id": f"d{n}", "action": action, "target": "svc", "state": {},
            "cause": {"event_id": f"e{n}"}, "decided_at": "2026-11-24T00:00:00Z", "reason": "test"}


@pytest.fixture
def sink():
    server = WebhookSink().start()
    yield server
    server.stop()


def run(sink: WebhookSink, name: str, batch: Events, **config) -> None:
    exporter = WebhookExporter(Settings.make(Kind.EXPORTER, ComponentID("webhook", name)),
                               WebhookConfig(endpoint=sink.url, **config))

    async def go() -> None:
        await exporter.start(Host())
        await exporter.consume(batch)
        await exporter.shutdown(asyncio.get_running_loop().time() + 10)

    asyncio.run(go())


def failed(name: str, error_type: str) -> float:
    return metrics.exporter_send_failed_spans.labels(f"webhook/{name}", error_type)._value.get()


def test_filtered_signed_and_keyed(sink):
    batch = Events([decision("rollback", 1), decision("alert", 2)])
    run(sink, "signed", batch, actions=["rollback"], secret="s3cret")
    [call] = sink.calls
    body = json.dumps(call["body"]).encode()
    assert call["body"]["action"] == "rollback" and call["headers"]["Idempotency-Key"] == "d1"
    signature = call["headers"]["X-Agentdbg-Signature"].removeprefix("sha256=")
    raw = batch.encoded()[0]
    assert hmac.compare_digest(signature, hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest())
    assert json.loads(raw) == json.loads(body)


def test_503_is_retried_with_the_same_key_and_400_is_permanent(sink):
    sink.script = [503, 503]
    run(sink, "retry", Events([decision("promote", 3)]), retry_on_failure={"initial_interval": "50ms"})
    assert [c["headers"]["Idempotency-Key"] for c in sink.calls] == ["d3", "d3", "d3"]
    sink.calls.clear()
    sink.script = [400]
    run(sink, "bad", Events([decision("promote", 4)]), retry_on_failure={"initial_interval": "50ms"})
    assert len(sink.calls) == 1 and failed("bad", "http_400") == 1

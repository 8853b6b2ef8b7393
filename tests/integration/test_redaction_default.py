"""config/default.yaml as shipped redacts the known secret formats before chDB stores them.

The OpenTelemetry SDK sends one agent span carrying an OpenAI-style key, an AWS access key
id, a JWT, a GitHub token, a bearer header and a card number (attributes, a GenAI event, the
prompt JSON); the store, read back with `agentdbg query` as a user would, holds none of them
(the card's last four digits only), while an email, personal data the shipped config leaves
alone, is stored as sent.
"""
from __future__ import annotations

import json
from pathlib import Path

from opentelemetry.sdk.resources import Resource

from testkit.harness import query_json, wait_until
from tests.integration.test_chdb_exporter import default_daemon
from testkit.otlp_spans import otlp_exporter, sdk_provider

SECRETS = {
    "sk_api_key": "sk-proj-Q2xvdWRGbGFyZVNlY3JldEtleTEyMzQ1Njc4OTA",
    "aws_access_key": "AKIAZ7VQ3XMPLEKEY123",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZ2VudC03In0.c2lnbmF0dXJlLWJ5dGVzLWhlcmU",
    "github_token": "ghp_" + "R7q2" * 9,
    "bearer": "Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    "card": "4242 4242 4242 4242",
}
EMAIL = "maria.gomez@example.org"


def test_default_config_stores_no_known_secret(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    daemon = default_daemon(data_dir).start()
    try:
        provider, _ = sdk_provider(Resource.create({"service.name": "billing-agent"}),
                                   otlp_exporter("grpc", daemon.ports["grpc"]))
        prompt = json.dumps([{"role": "user", "content": f"charge {SECRETS['card']} and mail {EMAIL}"}])
        with provider.get_tracer("integration.redaction").start_as_current_span("chat gpt-4o-mini", attributes={
                **{f"test.{kind}": f"value: {secret}" for kind, secret in SECRETS.items()},
                "gen_ai.input.messages": prompt, "user.email": EMAIL}) as span:
            span.add_event("gen_ai.tool.message", {"content": f"Authorization: {SECRETS['bearer']}"})
        provider.shutdown()
        wait_until(lambda: daemon.metric("otelcol_exporter_sent_spans_total", exporter="chdb") >= 1, timeout=30,
                   message="the span in chdb")
    finally:
        assert daemon.stop() == 0
    rows = query_json("SELECT SpanAttributes, Events.Attributes FROM otel.otel_traces", "--path",
                      str(data_dir / "chdb"))
    stored = json.dumps(rows)
    assert len(rows) == 1
    leaked = [kind for kind, secret in SECRETS.items() if (secret.split()[-1] if kind == "bearer" else secret) in stored]
    assert leaked == [] and "4242424242424242" not in stored
    attributes = rows[0]["SpanAttributes"]
    assert attributes["test.card"] == "value: ****4242"
    assert attributes["test.sk_api_key"] == "value: [REDACTED:sk_api_key]"
    assert attributes["user.email"] == EMAIL and EMAIL in json.loads(attributes["gen_ai.input.messages"])[0]["content"]

"""Issue 13, hygiene: secrets never reach the log, `/debug` or `validate`'s output.

A ClickHouse endpoint with credentials in its URL, pointed at a closed port, makes the
exporter warn about the endpoint (and its retries report the error in health): the password
must not appear anywhere the daemon writes. `validate` with a wrongly typed secret (a list
for the Kafka SASL password, a header value, a bearer token) names the key, never the value.
"""
from __future__ import annotations

import requests

from testkit.harness import BASE_CONFIG, Daemon, batch_processor, component, free_port, pipeline_overlay, wait_until

PASSWORD = "hunter2-s3cr3t-pw"


def test_clickhouse_url_credentials_are_not_logged(tmp_path):
    endpoint = f"http://ingest:{PASSWORD}@127.0.0.1:{free_port()}"
    exporter = component("clickhouse", endpoint=endpoint, timeout="1s")
    with Daemon(BASE_CONFIG, workdir=tmp_path, overlay=pipeline_overlay(exporter, batch_processor())) as daemon:
        wait_until(lambda: "not reachable at start" in daemon.log(), timeout=30, message="the connect warning")
        debug = f"http://127.0.0.1:{daemon.ports['debug']}/debug"
        reports = [requests.get(f"{debug}/{route}", timeout=5).text for route in ("pipelines", "health")]
        health = requests.get(f"http://127.0.0.1:{daemon.ports['health']}/", timeout=5).text
    log = daemon.log()
    assert "127.0.0.1" in log  # the endpoint is still named, only its password is masked
    assert "ingest:***@127.0.0.1" in log
    for text in (log, health, *reports):
        assert PASSWORD not in text


SECRETS_CONFIG = f"""
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:4318
        auth:
          authenticator: bearertokenauth
extensions:
  bearertokenauth:
    token: ["{PASSWORD}-token"]
exporters:
  kafka:
    brokers: ["127.0.0.1:9092"]
    sasl:
      mechanism: PLAIN
      username: ingest
      password: ["{PASSWORD}-sasl"]
  otlphttp:
    endpoint: http://127.0.0.1:4319
    headers:
      Authorization: ["Bearer {PASSWORD}-header"]
service:
  extensions: [bearertokenauth]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [kafka, otlphttp]
"""


def test_validate_names_a_wrongly_typed_secret_but_not_its_value(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(SECRETS_CONFIG)
    from testkit.harness import agentdbg

    result = agentdbg("validate", "--config", str(config))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "sasl::password" in output
    assert "headers::Authorization" in output
    assert "bearertokenauth::token" in output
    assert PASSWORD not in output

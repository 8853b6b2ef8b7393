"""The `redaction` processor in the running daemon: the seeded PII/PCI/secret corpus goes in
through the OpenTelemetry SDK (gRPC and HTTP) in span attributes, arrays, event attributes,
status messages, a resource attribute and GenAI chat JSON; none of it may come out in the
file exporter's output, the chDB store, the Kafka topic (a real broker: the kafka exporter
sends a batch's wire bytes, so this is where cached original bytes would show) or the
daemon's log (a `debug` exporter with
`verbosity: detailed` logs every attribute, so the log is a real place to look). Each
span's redacted text keeps everything around the secret, the JSON stays valid, and the
HMAC of one email sent twice is the same."""
from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import Status, StatusCode

from testkit.harness import BASE_CONFIG, Daemon, query_json, wait_until
from testkit.kafka_broker import read_topic
from testkit.otlp_spans import attributes, each_span, otlp_exporter, read_json_lines, sdk_provider
from testkit.redaction_corpus import Sample, chat_json, samples

HASH_KEY = "integration-test-key-0123456789"
RESOURCE_SECRET = "AKIAABCDEFGHIJ234567"
REPEATED_EMAIL = "ana.silva@example.travel"
OVERLAY = """
processors:
  redaction:
    allow_all_keys: true
    hash_key: ${env:REDACTION_KEY}
    detectors:
      email: {mode: hash}
      phone: true
  batch: {timeout: 50ms}
exporters:
  file: {path: "{dir}/out/spans.jsonl", flush_interval: 50ms}
  chdb: {path: "{dir}/chdb"}
  kafka: {brokers: [%(bootstrap)s], topic: %(topic)s}
  debug: {verbosity: detailed}
service:
  telemetry:
    logs: {level: debug}
  pipelines:
    traces: {receivers: [otlp], processors: [redaction, batch], exporters: [file, chdb, kafka, debug]}
"""
CORPUS = list(samples(seed=41, per_kind=8))
TOPIC = "redaction_spans"


def leaked(text: str, sample: Sample) -> list[str]:
    """The forms of the sample's secret found in `text` (bearer: the token; cards: the digits too)."""
    forms = {sample.secret}
    if sample.kind == "bearer":
        forms = {sample.secret.split()[-1]}
    if sample.kind in ("card", "iban"):
        forms.add(re.sub(r"[ -]", "", sample.secret))
    return [form for form in forms if form in text]


def send(daemon: Daemon) -> int:
    rng = random.Random(3)
    sent = 0
    for transport in ("grpc", "http"):
        provider, _ = sdk_provider(Resource.create({"service.name": "travel-agent", "deploy.key": RESOURCE_SECRET}),
                                   otlp_exporter(transport, daemon.ports[transport]))
        tracer = provider.get_tracer("integration.redaction")
        for index, sample in enumerate(CORPUS):
            if index % 2 != (transport == "http"):
                continue
            with tracer.start_as_current_span(f"chat {index}", attributes={
                    "sample.index": index, "input.value": sample.text, "tags": ["plain", sample.text],
                    "gen_ai.input.messages": chat_json(sample, rng), "user.email": REPEATED_EMAIL}) as span:
                span.add_event("gen_ai.user.message", {"content": sample.text})
                span.set_status(Status(StatusCode.ERROR, sample.text))
            sent += 1
        provider.shutdown()
    return sent


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, kafka_session_broker: Any) -> dict[str, Any]:
    kafka_session_broker.create_topic(TOPIC)
    overlay = OVERLAY.replace("%(bootstrap)s", kafka_session_broker.bootstrap).replace("%(topic)s", TOPIC)
    daemon = Daemon(BASE_CONFIG, workdir=tmp_path_factory.mktemp("redaction"), overlay=overlay,
                    env={"REDACTION_KEY": HASH_KEY})
    try:
        with daemon:
            result = _send_and_collect(daemon, kafka_session_broker)
    finally:
        kafka_session_broker.delete_topics([TOPIC])
    result["rows"] = query_json("SELECT * FROM otel.otel_traces", "--path", str(daemon.dir / "chdb"))
    return result


def _send_and_collect(daemon: Daemon, broker: Any) -> dict[str, Any]:
    sent = send(daemon)
    out = daemon.dir / "out" / "spans.jsonl"
    wait_until(lambda: len(list(each_span(read_json_lines(out)))) >= sent if out.exists() else False,
               timeout=30, message="every span in the file exporter's output")
    wait_until(lambda: daemon.metric("otelcol_exporter_sent_spans_total", exporter="chdb") >= sent,
               timeout=30, message="every span in chdb")
    counted = {kind: daemon.metric("agentdbg_processor_redaction_redacted_values_total", rule=kind)
               for kind in {s.kind for s in CORPUS}}
    span_ids = {span.span_id.hex() for _, _, span in each_span(read_json_lines(out))}
    kafka = b"".join(message.value for message in read_topic(broker, TOPIC, span_ids))
    return {"daemon": daemon, "sent": sent, "file": out, "counted": counted, "kafka": kafka}


def test_no_secret_in_the_file_output_the_store_or_the_log(run: dict[str, Any]) -> None:
    file_text = run["file"].read_text()
    store_text = json.dumps(run["rows"])
    log_text = run["daemon"].log()
    assert len(run["rows"]) == run["sent"] == len(CORPUS)
    assert "chat 0" in log_text  # the debug exporter did log the spans
    kafka_text = run["kafka"].decode("utf-8", "replace")
    assert "chat 0" in kafka_text  # the topic holds the spans
    for where, text in (("file exporter", file_text), ("chdb store", store_text), ("daemon log", log_text),
                        ("kafka topic", kafka_text)):
        found = {sample.secret: leaked(text, sample) for sample in CORPUS if leaked(text, sample)}
        assert not found, f"{where} holds {found}"
        assert RESOURCE_SECRET not in text and REPEATED_EMAIL not in text, where


def test_each_span_keeps_what_surrounds_its_secret(run: dict[str, Any]) -> None:
    spans = {attributes(span.attributes)["sample.index"]: (span, rs)
             for rs, _, span in each_span(read_json_lines(run["file"]))}
    assert sorted(spans) == list(range(len(CORPUS)))
    for index, sample in enumerate(CORPUS):
        span, rs = spans[index]
        attrs = attributes(span.attributes)
        head, tail = sample.text[:sample.start], sample.text[sample.start + len(sample.secret):]
        for text in (attrs["input.value"], attrs["tags"][1], span.status.message,
                     attributes(span.events[0].attributes)["content"]):
            assert text.startswith(head) and text.endswith(tail) and text != sample.text, (sample, text)
        assert attrs["tags"][0] == "plain"
        messages = json.loads(attrs["gen_ai.input.messages"])  # still valid JSON, same shape
        assert [m["role"] for m in messages] == ["system", "user", "assistant"]
        assert messages[1]["parts"][0]["content"].startswith(head)
        assert attributes(rs.resource.attributes)["deploy.key"] == "[REDACTED:aws_access_key]"


def test_equal_values_hash_equal_across_spans_and_requests(run: dict[str, Any]) -> None:
    hashes = {attributes(span.attributes)["user.email"] for _, _, span in each_span(read_json_lines(run["file"]))}
    assert len(hashes) == 1 and re.fullmatch(r"hmac:[0-9a-f]{16}", hashes.pop())


def test_redactions_are_counted_per_rule(run: dict[str, Any]) -> None:
    for kind, count in run["counted"].items():
        per_span = sum(1 for s in CORPUS if s.kind == kind)
        # input, tags, event, status and twice in the chat JSON: at least five per sample
        assert count >= 5 * per_span, (kind, count)

"""A restarted single daemon resumes its open episodes (issue 16, acceptance 4).

config/default.yaml's shape (spans → triggers → safety in one process) with the triggers
connector checkpointed: an error spike opens the checkout breaker, the daemon is SIGKILLed,
started again on the same directories, and the failures stop. The error episode restored
from the checkpoint resolves with the id it fired with before the restart, and the breaker
closes on that resolution. The safety processor keeps the episodes it waits for across its own
restart (`restored_episodes: keep`), so without the restored episode the breaker would stay on
its fallback: nothing else resolves it. Run with the checkpoint in a file_storage directory,
and in a Kafka compacted changelog topic on the real broker.
"""
from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from testkit.harness import BASE_CONFIG, Daemon, wait_until
from testkit.trigger_helpers import read_events
from testkit.webhook_sink import WebhookSink
from tests.integration.test_safety_inprocess import send_spans
from tests.integration.test_safety_restart import OVERLAY, breaker

# Over the restart test's overlay (breaker, webhook, safety state file): the connector
# checkpointed, episodes that resolve within seconds, and the trigger events kept in a file.
CHECKPOINTED = """
extensions:
  file_storage: {{directory: "{{dir}}/state"}}
connectors:
  triggers:
    allowed_lateness: 500ms
    resolve_after: 2s
    checkpoint: {checkpoint}
processors:
  safety:
    restored_episodes: keep
exporters:
  file/events: {{path: "{{dir}}/events.jsonl", flush_interval: 50ms}}
service:
  extensions: [health_check, debug_api, file_storage]
  pipelines:
    events/triggers: {{receivers: [triggers], exporters: [file/events]}}
"""
FILE_CHECKPOINT = "{storage: file_storage, interval: 200ms}"
TOPIC = "agentdbg.test.changelog"


@pytest.fixture
def webhook_sink():
    yield (sink := WebhookSink().start())
    sink.stop()


def checkpointed_daemon(tmp_path: Path, webhook: WebhookSink, checkpoint: str) -> Daemon:
    return Daemon(BASE_CONFIG, workdir=tmp_path, overlay=[OVERLAY.format(hook=webhook.url),
                                                          CHECKPOINTED.format(checkpoint=checkpoint)])


def error_events(daemon: Daemon) -> list[dict[str, Any]]:
    return [e for e in read_events(daemon.dir / "events.jsonl")
            if e["kind"] == "error_rate_spike" and e["subject"] == {"service": "checkout"}]


def checkpointed_episodes(daemon: Daemon) -> list[str]:
    path = daemon.dir / "state" / "triggers-checkpoint" / "checkpoint.json"
    if not path.exists():
        return []
    return [json.loads(value)["s"]["id"] for key, value in json.loads(path.read_bytes()).items()
            if key.startswith("episodes|error_rate_spike|")]


def open_breaker_then_kill(daemon: Daemon, checkpointed: Any) -> str:
    """Fail the checkout service until its breaker opens and the episode is checkpointed; SIGKILL."""
    def failing() -> list[dict[str, Any]]:
        """Fail on (so the episode is still open when the daemon dies) until it is checkpointed."""
        send_spans(daemon.ports["grpc"], "checkout", 40, failing=True)
        fired = [e for e in error_events(daemon) if e["status"] == "firing"]
        return fired if fired and breaker(daemon)["state"] != "closed" and fired[0]["episode"] in checkpointed() else []

    with daemon:
        (fired,) = wait_until(failing, timeout=30, interval=0.2, message="breaker open, the episode checkpointed")
        daemon.signal(signal.SIGKILL)
        daemon.proc.wait(10)
    return fired["episode"]


def resolve_after_restart(daemon: Daemon, webhook: WebhookSink, episode: str) -> None:
    before = len(webhook.calls)
    with daemon:  # same directories: the checkpoint, the safety state file
        assert breaker(daemon)["state"] in ("open", "half_open")
        # The failures have stopped: healthy traffic until the restored episode resolves.
        wait_until(lambda: (send_spans(daemon.ports["grpc"], "checkout", 30, failing=False),
                            [e for e in error_events(daemon) if e["status"] == "resolved"])[1],
                   timeout=30, interval=0.5, message="the restored episode resolved")
        statuses = [(e["status"], e["episode"]) for e in error_events(daemon)]  # the file is appended to
        assert statuses == [("firing", episode), ("resolved", episode)], "resolved with its id, raised once"
        wait_until(lambda: breaker(daemon)["state"] == "closed", timeout=15, message="breaker closed")
        after = [c["body"] for c in webhook.calls[before:]]
        # Half-open while the episode still fired (its window holds the failures), open again on
        # the same tier, then closed once it resolved; never a step down the fallback chain.
        assert after[-1]["action"] == "breaker_close", after
        assert all(d["state"]["tier"] <= 1 for d in after), "it never stepped down the chain"


def test_a_restarted_daemon_resumes_its_open_episode_from_file_storage(tmp_path: Path, webhook_sink: WebhookSink
                                                                        ) -> None:
    daemon = checkpointed_daemon(tmp_path, webhook_sink, FILE_CHECKPOINT)
    episode = open_breaker_then_kill(daemon, lambda: checkpointed_episodes(daemon))
    resolve_after_restart(daemon, webhook_sink, episode)
    wait_until(lambda: checkpointed_episodes(daemon) == [], timeout=10, message="the resolved episode left the file")


async def changelog(bootstrap: str) -> dict[str, bytes | None]:
    """The changelog topic's last value per key (None: a tombstone)."""
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        out: dict[str, bytes | None] = {}
        for messages in (await consumer.getmany(timeout_ms=2000)).values():
            for message in messages:
                out[message.key.decode()] = message.value
        return out
    finally:
        await consumer.stop()


async def cleanup_policy(bootstrap: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC)])
        entries = {entry[0]: entry[1] for entry in response.resources[0][4]}
        return entries["cleanup.policy"]
    finally:
        await admin.close()


def kafka_episodes(bootstrap: str) -> list[str]:
    return [json.loads(value)["s"]["id"] for key, value in asyncio.run(changelog(bootstrap)).items()
            if key.startswith("episodes|error_rate_spike|") and value is not None]


def test_a_restarted_daemon_resumes_its_open_episode_from_a_kafka_changelog(tmp_path: Path,
                                                                            webhook_sink: WebhookSink,
                                                                            kafka_broker) -> None:
    checkpoint = f"{{kafka: {{brokers: ['{kafka_broker.bootstrap}'], topic: {TOPIC}}}, interval: 200ms}}"
    daemon = checkpointed_daemon(tmp_path, webhook_sink, checkpoint)
    episode = open_breaker_then_kill(daemon, lambda: kafka_episodes(kafka_broker.bootstrap))
    assert asyncio.run(cleanup_policy(kafka_broker.bootstrap)) == "compact"
    (key,) = [k for k in asyncio.run(changelog(kafka_broker.bootstrap)) if k.startswith("episodes|")]
    resolve_after_restart(daemon, webhook_sink, episode)
    # The resolved episode's key is tombstoned, so the compacted topic forgets it.
    wait_until(lambda: asyncio.run(changelog(kafka_broker.bootstrap))[key] is None, timeout=10,
               message="the resolved episode tombstoned")

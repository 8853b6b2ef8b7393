"""The safety chain with real parts, for tests/integration/test_safety_e2e.py and
benchmarks/bench_safety_latency.py:

    OpenTelemetry SDK agents ──OTLP/HTTP──▶ collector daemon (otlp → batch → triggers
    connector; events → kafka/triggers, JSON keyed by subject) ──▶ Apache Kafka, topic
    agent.triggers ──▶ safety daemon (config/safety.yaml as shipped, set up through its
    environment variables, plus an overlay) ──▶ topic agent.safety.decisions, a real
    Alertmanager, and two webhooks served by one `WebhookSink` in the caller's process:
    `/rollback` (safety.yaml's `webhook/rollback`: rollback, promote) and `/actions`
    (`webhook/actions`: breaker, fallback and throttle decisions).

`SafetyChain(workdir, triggers=..., safety=...)` takes the body of the collector's
`connectors: triggers:` block and of the safety daemon's `processors: safety:` block
(YAML indented by six spaces), starts everything in order on free loopback ports, and
returns once a probe (a baseline service's spans) has gone through the whole chain, so the
safety consumer has joined its group; it stops all of it on `stop()` (or leaving the
`with` block), whatever failed. The caller
reads what a user would: `decisions()` and `trigger_events()` (a consumer tailing both
topics), `hook_calls(path)`, `alertmanager.active(...)`, and the safety daemon's debug API
with its bearer token (`debug("breakers")`).
"""
from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

import requests
from opentelemetry.trace import SpanKind

from testkit.alertmanager import Alertmanager
from testkit.harness import BASE_CONFIG, ROOT, Daemon, wait_until
from testkit.kafka_broker import KafkaBroker, TopicTail
from testkit.trigger_helpers import SdkAgent
from testkit.webhook_sink import WebhookSink

TRIGGERS_TOPIC = "agent.triggers"
DECISIONS_TOPIC = "agent.safety.decisions"
DEAD_LETTER_TOPIC = "agent.triggers.dlq"
ROLLBACK_HOOK, ACTIONS_HOOK = "/rollback", "/actions"
ACTIONS_HOOK_ACTIONS = ("breaker_open", "breaker_half_open", "breaker_close", "fallback", "throttle", "unthrottle")
DEBUG_TOKEN = "e2e-debug-token"

# Over testkit.harness.BASE_CONFIG: the collector of config/production.yaml, minus the span
# stores (ClickHouse, Tempo, the spans topic) this chain does not look at.
COLLECTOR_OVERLAY = """
processors:
  batch:
    timeout: 200ms
connectors:
  triggers:
%(triggers)s
exporters:
  kafka/triggers:
    brokers: [%(broker)s]
    topic: agent.triggers
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [triggers]
    events:
      receivers: [triggers]
      exporters: [kafka/triggers]
"""

# Over config/safety.yaml: loopback ports (filled in by testkit.harness.Daemon), a second
# webhook for the breaker and throttle decisions.
SAFETY_OVERLAY = """
extensions:
  health_check:
    endpoint: {health}
  debug_api:
    endpoint: {debug}
processors:
  safety:
%(safety)s
exporters:
  webhook/actions:
    endpoint: %(actions_hook)s
    actions: [%(actions)s]
    sending_queue:
      enabled: false
service:
  pipelines:
    events:
      receivers: [kafka]
      processors: [safety]
      exporters: [kafka/decisions, alertmanager, webhook/rollback, webhook/actions]
  telemetry:
    metrics:
      address: {metrics}
"""


class SafetyChain:
    def __init__(self, workdir: Path, triggers: str, safety: str, alertmanager_binary: str | None = None,
                 broker: KafkaBroker | None = None) -> None:
        self.workdir = workdir
        self._given_broker = broker  # a running broker to use (the test run's), else one of its own
        self.triggers = triggers
        self.safety_yaml = safety
        self.alertmanager_binary = alertmanager_binary or shutil.which("prometheus-alertmanager")
        if self.alertmanager_binary is None:
            raise FileNotFoundError("prometheus-alertmanager is not installed (make system-deps installs it)")
        self._stack = contextlib.ExitStack()
        self.broker: KafkaBroker
        self.alertmanager: Alertmanager
        self.hooks: WebhookSink
        self.safety: Daemon
        self.collector: Daemon
        self.tail: TopicTail
        self._agents: list[SdkAgent] = []

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "SafetyChain":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        stack = self._stack
        self.broker = self._given_broker or stack.enter_context(KafkaBroker())
        for topic in (TRIGGERS_TOPIC, DECISIONS_TOPIC, DEAD_LETTER_TOPIC):
            self.broker.create_topic(topic)
        self.alertmanager = Alertmanager(self.alertmanager_binary)
        stack.callback(self.alertmanager.stop)
        self.alertmanager.start()
        self.hooks = WebhookSink().start()
        stack.callback(self.hooks.stop)
        self.tail = stack.enter_context(TopicTail(self.broker, TRIGGERS_TOPIC, DECISIONS_TOPIC))
        self.safety = Daemon((ROOT / "config" / "safety.yaml").read_text(), workdir=self.workdir / "safety",
                             overlay=SAFETY_OVERLAY % {
                                 "safety": self.safety_yaml, "actions_hook": self.hooks.url_for(ACTIONS_HOOK),
                                 "actions": ", ".join(ACTIONS_HOOK_ACTIONS)},
                             env={"KAFKA_BROKERS": self.broker.bootstrap, "ALERTMANAGER_URL": self.alertmanager.url,
                                  "ROLLBACK_WEBHOOK_URL": self.hooks.url_for(ROLLBACK_HOOK),
                                  "AGENTDBG_DATA_DIR": str(self.workdir / "safety" / "data"),
                                  "AGENTDBG_DEBUG_TOKEN": DEBUG_TOKEN})
        self._run(self.safety)
        self.collector = Daemon(BASE_CONFIG, workdir=self.workdir / "collector", overlay=COLLECTOR_OVERLAY % {
            "triggers": self.triggers, "broker": self.broker.bootstrap})
        self._run(self.collector)
        stack.callback(self._shutdown_agents)
        self._wait_consuming()

    def _wait_consuming(self, timeout: float = 60.0) -> None:
        """The safety daemon is healthy before its consumer has joined its group (the broker
        holds a group's first join for its initial rebalance delay: 3 s by Kafka's default, none
        on the test broker). Send a probe through the whole chain, a baseline service whose
        health snapshots decide nothing, until the safety daemon has consumed one."""
        probe = self.agent("chain-probe", **{"service.version": "probe"})

        def consumed() -> bool:
            now = time.time()
            probe.span("GET /health", now - 0.01, now, SpanKind.SERVER)
            probe.flush()
            return self.safety.metric("agentdbg_receiver_accepted_events_total") >= 1

        wait_until(consumed, timeout=timeout, interval=0.5, message="a probe through the whole chain")

    def _run(self, daemon: Daemon) -> None:
        """Start `daemon`; on the way out SIGTERM it, and SIGKILL it if that failed (or it never got healthy)."""
        self._stack.callback(daemon.kill)
        daemon.start()
        self._stack.callback(daemon.stop)

    def _shutdown_agents(self) -> None:
        for agent in self._agents:
            agent.shutdown()

    def stop(self) -> None:
        self._stack.close()

    def __enter__(self) -> "SafetyChain":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- acting ----------------------------------------------------------------------------------
    def agent(self, service: str, **resource: Any) -> SdkAgent:
        """An SDK agent sending to the collector; shut down with the chain."""
        agent = SdkAgent(f"http://127.0.0.1:{self.collector.ports['http']}", service, **resource)
        self._agents.append(agent)
        return agent

    # -- looking ---------------------------------------------------------------------------------
    def debug(self, route: str, **params: str) -> Any:
        """GET /debug/<route> on the safety daemon, with the bearer token it is configured with."""
        response = requests.get(f"http://127.0.0.1:{self.safety.ports['debug']}/debug/{route}", params=params,
                                headers={"Authorization": f"Bearer {DEBUG_TOKEN}"}, timeout=5)
        response.raise_for_status()
        return response.json()

    def decisions(self, action: str | None = None) -> list[dict[str, Any]]:
        """Decisions published on agent.safety.decisions so far (optionally one action's)."""
        return [d for d in self.tail.documents(DECISIONS_TOPIC) if action is None or d["action"] == action]

    def trigger_events(self) -> list[dict[str, Any]]:
        """Trigger events the collector published on agent.triggers so far."""
        return self.tail.documents(TRIGGERS_TOPIC)

    def hook_calls(self, path: str, action: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self.hooks.calls_to(path) if action is None or c["body"]["action"] == action]

    def logs(self) -> str:
        """Both daemons' logs, for assertion messages."""
        return f"--- collector ---\n{self.collector.log()}\n--- safety ---\n{self.safety.log()}"

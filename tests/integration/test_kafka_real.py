"""What a real Apache Kafka broker (testkit/kafka_broker.py) shows that a stand-in could not.

(a) A broker bounce under load, data kept: the daemon's kafka exporter (default idempotent
    producer, acks=all) keeps taking OTLP load while the broker is stopped with SIGTERM and
    started again, then killed with SIGKILL and started again, on the same log directory.
    Every span the receiver acknowledged is on the topic afterwards (acked ⊆ delivered),
    read from the start, so nothing acknowledged before a bounce was lost in it. This found
    that after a bounce the brokers refused the idempotent producer's sequence numbers
    (OutOfOrderSequenceNumber) on every retry, which aiokafka never resets: nothing was
    sent again until shutdown dropped the queue. The exporter now starts a new producer.
(b) Topic auto-creation off: spans for a topic that does not exist are retried with a log
    line that names the topic and says to create it, counted as retries; once an operator
    creates the topic every one of them arrives. An exporter whose retries run out counts
    its spans as failed, with the same clear reason in the log. (Before, the retry said only
    `TimeoutError`: aiokafka polled for the topic's metadata until the send timed out.)
(c) A compacted decisions topic (`cleanup.policy=compact`): the safety consumer's decisions
    are keyed by target, so once the broker compacts the topic a reader rebuilding state
    from it finds exactly the latest decision of each breaker, matching the daemon's view.
"""
from __future__ import annotations

import json
import time
import uuid

import requests

from testkit.harness import BASE_CONFIG, Daemon, component, pipeline_overlay, wait_until
from tests.integration.test_safety_kafka import OVERLAY as SAFETY_OVERLAY, produce as produce_values, trigger
from tests.integration.test_safety_kafka import webhook  # noqa: F401 - the webhook sink fixture
from testkit.kafka_broker import TopicTail, produce, read_topic
from testkit.otlp_load import Load, agent_request

RETRY_FAST = "{initial_interval: 200ms, max_interval: 1s, max_elapsed_time: 0}"


def kafka_exporter(name: str, broker: str, topic: str, retry: str = RETRY_FAST) -> str:
    return component(name, brokers=f"[{broker}]", topic=topic, timeout="2s", retry_on_failure=retry)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# -- (a) a real bounce under load -----------------------------------------------------------------
def test_broker_restarts_under_load_keep_every_acknowledged_span(kafka_broker, record_property):
    topic = unique("restart_spans")
    kafka_broker.create_topic(topic, partitions=3)
    sent = lambda: daemon.metric("otelcol_exporter_sent_spans_total", exporter="kafka")  # noqa: E731
    with Daemon(BASE_CONFIG, overlay=pipeline_overlay(kafka_exporter("kafka", kafka_broker.bootstrap, topic))) \
            as daemon, Load(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces", agent_request) as load:
        for hard in (False, True):  # SIGTERM (a clean shutdown), then SIGKILL (log recovery on start)
            before = sent()
            wait_until(lambda: sent() > before + 100, timeout=60, message="spans reaching kafka before the bounce")
            kafka_broker.restart(hard=hard)
            after = sent()
            wait_until(lambda: sent() > after + 100, timeout=90, message="spans reaching kafka after the bounce")
        load.finish()
        assert not load.errors
        messages = read_topic(kafka_broker, topic, load.accepted, timeout=120)
        copies = [span_id for m in messages for span_id in m.span_ids()]
        duplicates = len(copies) - len(set(copies))
        record_property("accepted_spans", len(load.accepted))
        record_property("duplicate_spans", duplicates)
        print(f"broker bounces: {len(load.accepted)} spans acknowledged, all on the topic, {duplicates} "
              f"duplicates, {daemon.metric('agentdbg_exporter_retried_requests_total', exporter='kafka'):g} "
              f"retried sends")
        assert load.accepted <= set(copies)
        assert daemon.metric("otelcol_exporter_send_failed_spans_total", exporter="kafka") == 0


# -- (b) the unknown-topic path ---------------------------------------------------------------------
def test_a_missing_topic_is_retried_with_a_clear_reason_and_delivered_once_created(kafka_broker):
    waiting, giving_up = unique("not_yet_created"), unique("never_created")
    exporters = (kafka_exporter("kafka/wait", kafka_broker.bootstrap, waiting)
                 + kafka_exporter("kafka/giveup", kafka_broker.bootstrap, giving_up,
                                  retry="{initial_interval: 200ms, max_interval: 500ms, max_elapsed_time: 3s}"))
    with Daemon(BASE_CONFIG, overlay=pipeline_overlay(exporters)) as daemon:
        request = agent_request(20)
        answer = requests.post(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces",
                               data=request.SerializeToString(),
                               headers={"Content-Type": "application/x-protobuf"}, timeout=10)
        assert answer.status_code == 200
        wanted = {span.span_id.hex() for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans}
        retried = lambda: daemon.metric("agentdbg_exporter_retried_requests_total", exporter="kafka/wait")  # noqa: E731
        wait_until(lambda: retried() >= 3, timeout=30, message="the exporter retrying the missing topic")
        failed = lambda: daemon.metric("otelcol_exporter_send_failed_spans_total",  # noqa: E731
                                       exporter="kafka/giveup", error_type="retries_exhausted")
        wait_until(lambda: failed() == len(wanted), timeout=30, message="the give-up exporter counting its spans")
        log = daemon.log()
        for topic in (waiting, giving_up):
            assert f"topic {topic!r} does not exist" in log, f"no clear reason for {topic} in the log:\n{log[-3000:]}"
        assert daemon.healthy()

        kafka_broker.create_topic(waiting, partitions=1)  # what the operator does after reading the log
        messages = read_topic(kafka_broker, waiting, wanted, timeout=60)
        assert wanted <= {span_id for m in messages for span_id in m.span_ids()}
        assert daemon.metric("otelcol_exporter_send_failed_spans_total", exporter="kafka/wait") == 0
    assert giving_up not in kafka_broker.topics()  # the exporter never created it


# -- (c) a compacted decisions topic ------------------------------------------------------------------
SAFETY_TOPICS = ("agent.triggers", "agent.triggers.dlq")
DECISIONS = "agent.safety.decisions"
# Compaction as soon as possible: a segment rolls after 100 ms, the cleaner takes any dirty
# segment, and tombstones go at once. Production keeps the broker's defaults (hours).
COMPACTED = {"cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01",
             "min.compaction.lag.ms": "0", "delete.retention.ms": "100"}
# Two breakers; `database` reopens quickly enough to close within the test.
BREAKERS = """
processors:
  safety:
    breakers:
      database:
        failure_threshold: 3
        timeout: 1s
        fallback: cache_only
        match: [{kinds: [dependency_failure], subject: {dependency: postgres}}]
      llm:
        failure_threshold: 3
        timeout: 600s
        fallback: tinyllama
        match: [{kinds: [dependency_failure], subject: {dependency: openai}}]
"""


def latest_by_key(records) -> dict[bytes, dict]:
    latest: dict[bytes, dict] = {}
    for record in records:
        latest[record.key] = json.loads(record.value)
    return latest


def test_a_compacted_decisions_topic_keeps_the_latest_decision_of_each_breaker(tmp_path, kafka_broker, webhook):
    for topic in SAFETY_TOPICS:
        kafka_broker.create_topic(topic, partitions=1)
    kafka_broker.create_topic(DECISIONS, partitions=1, config=COMPACTED)
    overlay = SAFETY_OVERLAY.format(broker=kafka_broker.bootstrap, group="safety", state=tmp_path / "state.json",
                                    hook=webhook.url)
    postgres = trigger("dependency_failure", {"dependency": "postgres"}, "pg-1")
    openai = trigger("dependency_failure", {"dependency": "openai"}, "oa-1")
    with TopicTail(kafka_broker, DECISIONS) as tail, \
            Daemon(BASE_CONFIG, workdir=tmp_path / "safety", overlay=[overlay, BREAKERS]) as daemon:
        produce_values(kafka_broker.bootstrap, "agent.triggers", [json.dumps(openai).encode(),
                                                                  json.dumps(postgres).encode()])
        produce_values(kafka_broker.bootstrap, "agent.triggers",
                       [json.dumps(trigger("dependency_failure", {"dependency": "postgres"}, "pg-1",
                                           status="resolved")).encode()])
        debug = f"http://127.0.0.1:{daemon.ports['debug']}/debug/breakers"
        wait_until(lambda: requests.get(debug, timeout=2).json()["database"]["state"] == "closed"
                   and any(r.json()["action"] == "breaker_close" for r in tail.records()), timeout=30,
                   message="the database breaker opened and closed again")
        breakers = requests.get(debug, timeout=2).json()
    written = tail.records()
    want = latest_by_key(written)
    assert len(written) > len(want), "every breaker wrote several decisions: there is something to compact"
    assert want[b"database"]["action"] == "breaker_close"
    assert want[b"llm"]["action"] in ("breaker_open", "fallback") and breakers["llm"]["state"] == "open"

    # The cleaner leaves the active segment alone: a later record (a tombstone of an unused key,
    # as any later decision would) rolls it, then the broker compacts what came before.
    time.sleep(0.2)
    produce(kafka_broker, DECISIONS, [(b"segment-roll", None)])

    def compacted():
        records = [r for r in read_decisions(kafka_broker) if r.key != b"segment-roll"]
        return records if len(records) == len(want) else None

    survivors = wait_until(compacted, timeout=60, interval=0.5, message="the broker compacting the decisions topic")
    assert len(survivors) == len(want), "one decision per key is left"
    assert latest_by_key(survivors) == want, "the one left is the latest written"
    state = latest_by_key(survivors)  # what a reader rebuilding the breakers' state sees
    assert (state[b"database"]["action"], breakers["database"]["state"]) == ("breaker_close", "closed")
    assert state[b"llm"]["action"] in ("breaker_open", "fallback") and breakers["llm"]["state"] == "open"


def read_decisions(broker):
    """The decisions topic from the start as a reader rebuilding state would read it now."""
    with TopicTail(broker, DECISIONS) as tail:
        end = time.monotonic() + 3
        while time.monotonic() < end and not tail.records():
            time.sleep(0.1)
        time.sleep(0.5)  # the rest of what is there arrives in the same fetches
        return tail.records()

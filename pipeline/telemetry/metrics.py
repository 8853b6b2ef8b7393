"""Own metrics, with the OpenTelemetry Collector's names (docs/telemetry.md).

Counters carry the Prometheus `_total` suffix (prometheus-client adds it to the names below).
Components bind their label values once, at construction, never per batch.
Metrics that otelcol lacks are prefixed `agentdbg_`.
"""
from __future__ import annotations

import os
import time

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

prometheus_client.disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)

RECEIVER = ["receiver", "transport"]
EXPORTER = ["exporter"]
QUEUE = ["exporter", "data_type"]
PROCESSOR = ["processor", "otel_signal"]

receiver_accepted_spans = Counter(
    "otelcol_receiver_accepted_spans", "Number of spans successfully pushed into the pipeline.",
    RECEIVER, registry=REGISTRY)
receiver_refused_spans = Counter(
    "otelcol_receiver_refused_spans",
    "Number of spans the pipeline refused (retryably: full queue, memory limit); the client was told to retry.",
    RECEIVER, registry=REGISTRY)
receiver_failed_spans = Counter(
    "otelcol_receiver_failed_spans",
    "Number of spans rejected as invalid (permanently), including those reported in partial_success.",
    RECEIVER, registry=REGISTRY)
receiver_accepted_metric_points = Counter(
    "otelcol_receiver_accepted_metric_points", "Number of metric points successfully pushed into the pipeline.",
    RECEIVER, registry=REGISTRY)
receiver_refused_metric_points = Counter(
    "otelcol_receiver_refused_metric_points", "Number of metric points the pipeline refused retryably.",
    RECEIVER, registry=REGISTRY)
receiver_failed_metric_points = Counter(
    "otelcol_receiver_failed_metric_points", "Number of metric points rejected as invalid.",
    RECEIVER, registry=REGISTRY)
receiver_accepted_log_records = Counter(
    "otelcol_receiver_accepted_log_records", "Number of log records successfully pushed into the pipeline.",
    RECEIVER, registry=REGISTRY)
receiver_refused_log_records = Counter(
    "otelcol_receiver_refused_log_records", "Number of log records the pipeline refused retryably.",
    RECEIVER, registry=REGISTRY)
receiver_failed_log_records = Counter(
    "otelcol_receiver_failed_log_records",
    "Number of log records rejected as invalid, including those reported in partial_success.",
    RECEIVER, registry=REGISTRY)
receiver_rejected_requests = Counter(
    "agentdbg_receiver_rejected_requests",
    "Requests answered with an error before their spans could be counted, by reason.",
    RECEIVER + ["reason"], registry=REGISTRY)

exporter_sent_spans = Counter(
    "otelcol_exporter_sent_spans", "Number of spans successfully sent to destination.",
    EXPORTER, registry=REGISTRY)
exporter_send_failed_spans = Counter(
    "otelcol_exporter_send_failed_spans",
    "Number of spans the exporter gave up on (permanent error or retries exhausted), by error type.",
    EXPORTER + ["error_type"], registry=REGISTRY)
exporter_sent_log_records = Counter(
    "otelcol_exporter_sent_log_records", "Number of log records successfully sent to destination.",
    EXPORTER, registry=REGISTRY)
exporter_send_failed_log_records = Counter(
    "otelcol_exporter_send_failed_log_records",
    "Number of log records the exporter gave up on (permanent error or retries exhausted), by error type.",
    EXPORTER + ["error_type"], registry=REGISTRY)
exporter_enqueue_failed_log_records = Counter(
    "otelcol_exporter_enqueue_failed_log_records",
    "Number of log records refused because the sending queue was full.", EXPORTER, registry=REGISTRY)
exporter_enqueue_failed_spans = Counter(
    "otelcol_exporter_enqueue_failed_spans", "Number of spans refused because the sending queue was full.",
    EXPORTER, registry=REGISTRY)
exporter_retried_requests = Counter(
    "agentdbg_exporter_retried_requests", "Number of send attempts that failed retryably and were retried.",
    EXPORTER, registry=REGISTRY)
exporter_queue_size = Gauge(
    "otelcol_exporter_queue_size", "Current number of batches in the sending queue.", QUEUE, registry=REGISTRY)
exporter_queue_capacity = Gauge(
    "otelcol_exporter_queue_capacity", "Fixed capacity of the sending queue, in batches.", QUEUE, registry=REGISTRY)
exporter_in_flight_requests = Gauge(
    "otelcol_exporter_in_flight_requests", "Number of send requests currently in flight.", QUEUE,
    registry=REGISTRY)

processor_incoming_items = Counter(
    "otelcol_processor_incoming_items", "Number of items passed to the processor.", PROCESSOR,
    registry=REGISTRY)
processor_outgoing_items = Counter(
    "otelcol_processor_outgoing_items", "Number of items emitted from the processor.", PROCESSOR,
    registry=REGISTRY)
processor_refused_items = Counter(
    "agentdbg_processor_refused_items", "Number of items the processor refused retryably.", PROCESSOR,
    registry=REGISTRY)
memory_limiter_limit_bytes = Gauge(
    "agentdbg_memory_limiter_limit_bytes",
    "The memory_limiter's limits on the process's RSS: soft (refuses above it) and hard (also collects garbage).",
    ["processor", "limit"], registry=REGISTRY)
memory_limiter_usage_bytes = Gauge(
    "agentdbg_memory_limiter_usage_bytes", "RSS at the memory_limiter's last check.", ["processor"],
    registry=REGISTRY)
batch_send_size = Histogram(
    "otelcol_processor_batch_batch_send_size", "Number of spans in each batch sent.", ["processor"],
    buckets=(10, 25, 50, 75, 100, 250, 500, 750, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000,
             10000, 20000, 30000, 50000, 100000),
    registry=REGISTRY)
batch_wal_replayed_items = Counter(
    "agentdbg_processor_batch_wal_replayed_items",
    "Items the batch processor re-sent at start from its write-ahead log; those that had reached "
    "the exporters before a crash are delivered twice.", PROCESSOR, registry=REGISTRY)
batch_size_trigger_send = Counter(
    "otelcol_processor_batch_batch_size_trigger_send", "Number of times a batch was sent because of its size.",
    ["processor"], registry=REGISTRY)
batch_timeout_trigger_send = Counter(
    "otelcol_processor_batch_timeout_trigger_send", "Number of times a batch was sent because of the timeout.",
    ["processor"], registry=REGISTRY)

config_reloads = Counter(
    "agentdbg_config_reloads", "Configuration reloads (SIGHUP), by result (applied or rejected).", ["result"],
    registry=REGISTRY)
redaction_redacted_values = Counter(
    "agentdbg_processor_redaction_redacted_values",
    "Values the redaction processor masked or hashed, by rule (a detector's name, blocked_values, "
    "blocked_key_patterns; allowed_keys: attributes removed for not being allowed; failed: values "
    "replaced whole because they could not be scanned).", ["processor", "rule"], registry=REGISTRY)
redaction_cpu_seconds = Counter(
    "agentdbg_processor_redaction_cpu_seconds",
    "CPU time (of the thread running it) the redaction processor spent on batches.", ["processor"],
    registry=REGISTRY)
genai_unpriced_spans = Counter(
    "agentdbg_genai_unpriced_spans",
    "Spans with token usage that the genai processor could not price (model unknown to genai-prices and the "
    "prices_file), so no gen_ai.usage.cost was written; by model (at most 200 values, then \"other\").",
    ["model"], registry=REGISTRY)


class ProcessCollector(Collector):
    """otelcol_process_*: CPU seconds, resident memory and uptime of this process."""

    def __init__(self) -> None:
        self.started = time.time()
        self.page_size = os.sysconf("SC_PAGE_SIZE")

    def collect(self) -> list[Metric]:
        times = os.times()
        cpu = CounterMetricFamily("otelcol_process_cpu_seconds", "Total CPU user and system time in seconds.")
        cpu.add_metric([], times.user + times.system)
        rss = GaugeMetricFamily("otelcol_process_memory_rss_bytes", "Resident set size of the process in bytes.")
        rss.add_metric([], rss_bytes(self.page_size))
        uptime = CounterMetricFamily("otelcol_process_uptime_seconds", "Uptime of the process in seconds.")
        uptime.add_metric([], time.time() - self.started)
        return [cpu, rss, uptime]


def rss_bytes(page_size: int | None = None) -> int:
    """Current resident set size, from /proc (Linux)."""
    with open("/proc/self/statm", "rb") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * (page_size or os.sysconf("SC_PAGE_SIZE"))


REGISTRY.register(ProcessCollector())


def render() -> bytes:
    return prometheus_client.generate_latest(REGISTRY)

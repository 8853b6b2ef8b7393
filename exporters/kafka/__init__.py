"""`kafka`: produce spans (and logs, and trigger events) to a Kafka topic with aiokafka.

In a `logs` pipeline it produces otelcol-compatible OTLP `ExportLogsServiceRequest` messages
to `logs.topic` (default `otlp_logs`, as otelcol's kafkaexporter), in `logs.encoding` or else
`encoding`; everything below holds for them too (a record too large alone is the one refused).

Messages are otelcol-compatible: one OTLP `ExportTraceServiceRequest` per message,
`otlp_proto` (the batch's received wire bytes, untouched while nothing changed them) or
`otlp_json`; with `partition_traces_by_id` one message per trace, keyed by its lowercase
hex trace id; with `partition_by` (trace_id, session, service, service_dependency,
budget_owner) one message per key of that family, keyed by it, holding only the spans the
family's detectors read (pipeline/partitioning.py): the collector tier's input to the
evaluator tier.
Batches from an events pipeline (anything with `kafka_records()`) go out as
their own (key, value) records: JSON documents keyed by subject key.

What it promises (the exporter helper's queue and retries around aiokafka):
- Safe by default: `required_acks: all` and the idempotent producer, so a span counted as
  sent is on every in-sync replica and a producer retry does not duplicate it.
- Kafka slow: sends wait up to `timeout` each; meanwhile batches wait in the bounded
  `sending_queue`. When it is full the receiver refuses new data retryably (clients
  retry); nothing accepted is dropped silently.
- Kafka down or unreachable (also at start-up: the daemon starts anyway): every batch is
  retried with backoff until `retry_on_failure.max_elapsed_time`, then counted as failed
  (`retries_exhausted`) and logged. After a broker restart that refuses the idempotent
  producer's sequence numbers, a new producer (new producer id) takes over. A send that timed
  out may still be delivered by the producer, so recovery can bring duplicates, never gaps.
- Topic missing and the brokers do not create it: retried like an outage (Kafka classes
  it as retriable), each retry logged naming the topic and saying to create it; once it
  exists the queued batches go out.
- Kafka refuses: failed authentication or authorisation (`auth`), a broker that rejects
  the request (`invalid_request`, `message_too_large`) are permanent: not retried, counted
  in `otelcol_exporter_send_failed_spans_total{error_type=...}` and logged with the reason.
- Too large: a batch over `producer.max_message_bytes` is split by resource, scope and
  span into several valid requests, never failed whole. Only a span too large even alone
  is dropped, counted as `message_too_large` with its size in the log; the other spans of
  its batch still go and the queue moves on.
"""
from __future__ import annotations

from exporters.kafka.config import KafkaConfig
from exporters.kafka.exporter import KafkaExporter
from pipeline.component import Factory, Kind, Signal

factory = Factory("kafka", Kind.EXPORTER, KafkaConfig, KafkaExporter,
                  signals=frozenset({Signal.TRACES, Signal.LOGS, Signal.EVENTS}),
                  description="produce OTLP spans (proto or JSON) and trigger events to a Kafka topic")

__all__ = ["KafkaConfig", "KafkaExporter", "factory"]

"""pdata: the data that flows through pipelines, as otelcol's `pdata` is for the Collector.

What lives where:
- `batch.py`: the `Batch` protocol every batch type keeps (`item_count`, `received_at`,
  `clone()`) and `OtlpBatch`, the wire-bytes-plus-lazy-message base of the OTLP batches;
- `traces.py`: `Traces`, a batch of OTLP spans, and span-level helpers (count, iterate,
  split by span count);
- `metrics.py`: `Metrics`, a batch of OTLP metrics (items are data points);
- `logs.py`: `Logs`, a batch of OTLP log records (items are records), and record-level
  helpers (iterate with resource and scope, split by record count, select by index);
- `events.py`: `Events`, a batch of our own JSON documents (trigger events, decisions);
- `spans.py`: `SpanColumns`, the columnar view of a `Traces` batch, built once and shared
  by its readers, and its attribute capture (which typed columns the shared pass fills);
- `anyvalue.py`: OTLP `AnyValue` to text and Python values, and an attribute key's wire form;
- `wire.py`: protobuf varints and field framing, for code that reads or writes encoded
  bytes without parsing them (the one copy);
- `batch_codec.py`: any batch to bytes and back, for on-disk queues and dead letters.

Nothing here imports a component. How a component splits or encodes batches for its own
protocol stays with it (e.g. exporters/kafka/split.py cuts requests to Kafka's size limit).
"""

"""`genai_metrics`: GenAI metrics derived from spans, on the daemon's own `/metrics`.

It does for GenAI spans what otelcol's spanmetrics connector does for spans in general:
every batch is folded into per-label-set aggregates, and Prometheus scrapes them from the
daemon's metrics port (`service.telemetry.metrics.address`):

- `gen_ai_client_token_usage` (histogram; OpenTelemetry's `gen_ai.client.token.usage`, unit
  `{token}`), by `gen_ai_token_type` (input, output);
- `gen_ai_client_operation_duration_seconds` (histogram; `gen_ai.client.operation.duration`),
  with `error_type`;
- both by `gen_ai_operation_name`, `gen_ai_provider_name`, `gen_ai_request_model`,
  `gen_ai_response_model` and the extra `dimensions` (default: `service.name`,
  `gen_ai.agent.name`; as spanmetrics: a span attribute, else a resource attribute, else the
  dimension's `default`), with the buckets the GenAI semantic conventions advise;
- `agentdbg_genai_cost_usd_total{service, agent, model}` from the `gen_ai.usage.cost` the
  `genai` processor writes (so list `genai` among the pipeline's processors).

Why an exporter and not a connector: it ends a traces pipeline and its output is the
process's Prometheus registry, not another pipeline (a connector must feed one), just as
the daemon's own `otelcol_*` metrics are not a pipeline either.

Bounded cardinality, as spanmetrics' `aggregation_cardinality_limit`: each metric holds at
most `aggregation_cardinality_limit` label sets (default 2,000); observations of any further
label set go to one overflow series labelled `otel_metric_overflow="true"`, and are counted
in `agentdbg_genai_metrics_overflow_spans_total{metric}`. Totals stay exact; series are never
evicted, so counters never go backwards while the process runs. There is no counterpart of
spanmetrics' `dimensions_cache_size`: that bounds a cache of per-span key lookups, and here the
label sets are built per batch from the shared columns, with nothing cached between batches but
the bounded series themselves.

What it promises when the next stage is slow or down: there is no next stage. It works on
the batch's shared columns on the event loop (no queue, no I/O), never refuses or delays a
batch, and a batch it cannot read is logged and counted
(`agentdbg_genai_metrics_failed_batches_total`), never retried. A scrape reads a
consistent copy taken under a lock, once per metric. Series survive a SIGHUP reload that
keeps the exporter's id; they start empty after a process restart, as Prometheus counters may.
"""
from __future__ import annotations

import math
import time

from prometheus_client import Counter
from pydantic import Field, PositiveInt, field_validator, model_validator

from exporters.genai_metrics.collector import COLLECTOR, COST_LABELS, MODEL_LABELS, OVERFLOW_LABEL, Stores, label_name
from exporters.genai_metrics.fold import Dimension, Folder
from exporters.genai_metrics.store import SeriesStore
from pipeline.component import Exporter, Factory, Kind, Settings, Signal, StrictConfig
from pipeline.host import Host
from pipeline.pdata.batch import Batch
from pipeline.pdata.spans import SpanColumns
from pipeline.pdata.traces import Traces
from pipeline.telemetry.metrics import REGISTRY

# The GenAI semantic conventions' advised explicit bucket boundaries.
TOKEN_BUCKETS: tuple[float, ...] = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
                                    67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)

failed_batches = Counter("agentdbg_genai_metrics_failed_batches",
                         "Span batches the genai_metrics exporter could not fold (logged); the spans went on "
                         "to the other exporters.", ["exporter"], registry=REGISTRY)
fold_seconds = Counter("agentdbg_genai_metrics_fold_seconds",
                       "CPU time (of the event-loop thread) the genai_metrics exporter spent folding batches.",
                       ["exporter"], registry=REGISTRY)


class DimensionConfig(StrictConfig):
    name: str = Field(min_length=1)
    default: str | None = None


class HistogramConfig(StrictConfig):
    token_buckets: list[float] = Field(default_factory=lambda: list(TOKEN_BUCKETS), min_length=1)
    duration_buckets: list[float] = Field(default_factory=lambda: list(DURATION_BUCKETS), min_length=1)

    @field_validator("token_buckets", "duration_buckets")
    @classmethod
    def _increasing(cls, bounds: list[float]) -> list[float]:
        if sorted(set(bounds)) != list(bounds) or not all(math.isfinite(b) for b in bounds):
            raise ValueError("bucket bounds must be finite and strictly increasing")
        return bounds


class GenAIMetricsConfig(StrictConfig):
    dimensions: list[DimensionConfig] = Field(default_factory=lambda: [
        DimensionConfig(name="service.name"), DimensionConfig(name="gen_ai.agent.name")])
    histogram: HistogramConfig = HistogramConfig()
    aggregation_cardinality_limit: PositiveInt = 2000

    @model_validator(mode="after")
    def _labels_unique(self) -> "GenAIMetricsConfig":
        """Two dimensions that map to one Prometheus label (or to a built-in one) would clash."""
        builtin = {*MODEL_LABELS, "error_type", "gen_ai_token_type", OVERFLOW_LABEL}
        seen: set[str] = set()
        for dimension in self.dimensions:
            name = label_name(dimension.name)
            if name in seen or name in builtin:
                raise ValueError(f"dimension {dimension.name!r}: its label {name!r} is given twice "
                                 "or is a built-in label")
            seen.add(name)
        return self


class GenAIMetricsExporter(Exporter[Batch]):
    def __init__(self, settings: Settings, config: GenAIMetricsConfig) -> None:
        super().__init__(settings)
        self.config = config
        self.folder = Folder([Dimension(d.name, d.default) for d in config.dimensions])
        extra = tuple(label_name(d.name) for d in config.dimensions)
        limit = config.aggregation_cardinality_limit
        self.stores = COLLECTOR.claim(str(self.id), Stores(
            tokens=SeriesStore(MODEL_LABELS + ("gen_ai_token_type",) + extra + (OVERFLOW_LABEL,), limit,
                               tuple(config.histogram.token_buckets)),
            durations=SeriesStore(MODEL_LABELS + ("error_type",) + extra + (OVERFLOW_LABEL,), limit,
                                  tuple(config.histogram.duration_buckets)),
            costs=SeriesStore(COST_LABELS + (OVERFLOW_LABEL,), limit)))
        # The keys the folder reads typed (SpanAttributeReader): the batch's shared attribute pass
        # captures them (pipeline/pdata/spans.py: attribute capture), so reading them here costs no
        # walk of its own.
        self.span_attribute_keys = frozenset(self.folder.attribute_keys)
        self.failed = failed_batches.labels(str(self.id))
        self.fold_seconds = fold_seconds.labels(str(self.id))

    async def start(self, host: Host) -> None:
        COLLECTOR.start(str(self.id), self)

    async def shutdown(self, deadline: float | None = None) -> None:
        COLLECTOR.stop(self)

    async def consume(self, batch: Batch) -> None:
        if not isinstance(batch, Traces) or not batch.item_count:
            return
        started = time.thread_time()
        batch.capture(self.span_attribute_keys)
        try:
            self.fold(batch.columns)
        except Exception:
            self.failed.inc()
            self.log.exception("could not derive GenAI metrics from a batch; the spans went on")
        self.fold_seconds.inc(time.thread_time() - started)

    def fold(self, cols: SpanColumns) -> None:
        folded = self.folder.fold(cols)
        for observations in folded.durations:
            self.stores.durations.add(observations.labels, observations.values)
        for observations in folded.tokens:
            self.stores.tokens.add(observations.labels, observations.values)
        for observations in folded.costs:
            self.stores.costs.add_counts(observations.labels, observations.values)


factory = Factory("genai_metrics", Kind.EXPORTER, GenAIMetricsConfig, GenAIMetricsExporter,
                  signals=frozenset({Signal.TRACES}),
                  description="GenAI token, duration and cost metrics derived from spans, on the own /metrics")

"""What the `clickhouse` and `chdb` exporters write for each pipeline type: table, DDL, insert columns.

The graph builds one exporter instance per id and pipeline type, so an exporter named in a
`traces` pipeline writes spans to `traces_table_name` (the otelcol schema, schema.py) and the
same exporter named in an `events` pipeline writes trigger events and safety decisions to
`events_table_name` (the audit table, audit.py). Both go through the same column-oriented
insert and the same error mapping (errors.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from pydantic import field_validator

from exporters.clickhouse.audit import EVENTS_COLUMNS, events_columns, events_table_statements, select_documents
from exporters.clickhouse.schema import (INSERT_COLUMNS, qualified, quote, schema_statements, select_spans,
                                         traces_columns)
from exporters.helper import ExporterHelperConfig
from pipeline.component import Signal
from pipeline.config.units import Duration
from pipeline.events import Events
from pipeline.traces import Traces


class TablesConfig(ExporterHelperConfig):
    """The keys both exporters share: where the tables are and whether to create them."""

    database: str = "otel"
    traces_table_name: str = "otel_traces"
    events_table_name: str = "agentdbg_decisions"
    # Retention of the spans table and its trace-id lookup table: rows older than this are
    # dropped by the engine (whole daily parts). 360h = 15 days, the product's Prometheus
    # retention; 0 = keep for ever. Applied to a table created earlier too (ALTER ... MODIFY TTL).
    ttl: Duration = 360 * 3600.0
    # Retention of the audit table (trigger events, safety decisions, erasures): longer than the
    # spans by default (8760h = 365 days), because an audit trail must outlive the data it is
    # about (who erased what, which breaker opened when) and its rows are few; 0 = for ever.
    events_ttl: Duration = 8760 * 3600.0
    create_schema: bool = True
    # Where rows the engine refuses for good are kept (exporters/helper/dead_letter.py), in a
    # subdirectory per exporter id; "" = the exporter's default (beside its data).
    dead_letter: str = ""

    @field_validator("database", "traces_table_name", "events_table_name")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


@dataclass(frozen=True)
class TableSpec:
    """One table an exporter instance writes: its name, columns, DDL and batch → columns."""

    table: str  # qualified and quoted
    columns: tuple[tuple[str, str], ...]
    statements: tuple[str, ...]
    batch_type: type
    to_columns: Callable[[Any], list[Sequence]]
    select: Callable[[Any, Sequence[int]], Any]  # the batch's rows at these indices, as a batch

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(type_ for _, type_ in self.columns)

    def insert_statement(self) -> str:
        return f"INSERT INTO {self.table} ({', '.join(quote(name) for name in self.names)})"

    def wants(self, batch: Any) -> bool:
        """True for a non-empty batch of this table's kind."""
        return isinstance(batch, self.batch_type) and batch.span_count > 0


def traces_spec(config: TablesConfig) -> TableSpec:
    return TableSpec(qualified(config.database, config.traces_table_name), INSERT_COLUMNS,
                     tuple(schema_statements(config.database, config.traces_table_name, config.ttl)),
                     Traces, traces_columns, select_spans)


def events_spec(config: TablesConfig) -> TableSpec:
    table = qualified(config.database, config.events_table_name)
    statements = (f"CREATE DATABASE IF NOT EXISTS {quote(config.database)}",
                  *events_table_statements(table, config.events_ttl))
    return TableSpec(table, EVENTS_COLUMNS, statements, Events, events_columns, select_documents)


def preload_insert_modules() -> None:
    """Import what clickhouse-connect would import at the first insert, at start instead.

    Its `InsertContext.data` checks whether the data is a pandas DataFrame or a numpy array,
    importing pandas and numpy on first use: about 0.3 s of CPU and 0.6 s of wall time here,
    which the `clickhouse` exporter would spend on the event loop (stalling every receiver)
    when the first batch arrives. Call it from a worker thread in `start_client`.
    """
    from clickhouse_connect.driver import options

    for name in ("pd", "np"):
        getattr(options, name)


def table_spec(signal: Signal | None, config: TablesConfig) -> TableSpec:
    """The table for the pipeline type an exporter instance serves (traces unless events)."""
    return events_spec(config) if signal == Signal.EVENTS else traces_spec(config)


def slice_columns(columns: list[Sequence], start: int, stop: int) -> list[Sequence]:
    """Rows [start, stop) of column-oriented insert data (the data itself for all of it)."""
    if start == 0 and stop == len(columns[0]):
        return columns
    return [column[start:stop] for column in columns]

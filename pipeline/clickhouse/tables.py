"""What the `clickhouse` and `chdb` exporters write for each pipeline type: table, DDL, insert columns.

Storage code shared by every user of the ClickHouse tables (the exporters write them, the
explorer reads them); the exporters' shared config and base class are in exporters/clickhousehelper.

The graph builds one exporter instance per id and pipeline type, so an exporter named in a
`traces` pipeline writes spans to `traces_table_name` (the otelcol schema, schema.py) and the
same exporter named in an `events` pipeline writes trigger events and safety decisions to
`events_table_name` (the audit table, audit.py); named in a `logs` pipeline, it writes log records
to `logs_table_name` (otelcol's `otel_logs`, logs.py). All go through the same column-oriented
insert and the same error mapping (errors.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from pydantic import field_validator

from pipeline.clickhouse.audit import EVENTS_COLUMNS, events_columns, events_table_statements, select_documents
from pipeline.clickhouse.logs import LOGS_COLUMNS, logs_columns, logs_statements, select_logs
from pipeline.clickhouse.schema import INSERT_COLUMNS, qualified, quote, schema_statements, select_spans, traces_columns
from pipeline.clickhouse.sessions import summary_statements
from pipeline.component import Signal, StrictConfig
from pipeline.pdata.batch import Batch
from pipeline.pdata.events import Events
from pipeline.pdata.logs import Logs
from pipeline.pdata.traces import Traces


class TableLocation(StrictConfig):
    """The config keys that name the tables: the `clickhouse` and `chdb` exporters' and the explorer's."""

    database: str = "otel"
    traces_table_name: str = "otel_traces"
    events_table_name: str = "agentdbg_decisions"
    # The table a `logs` pipeline writes (otelcol's otel_logs schema: logs.py), with the spans
    # table's `ttl`; the explorer's erasure deletes a session's log records there too.
    logs_table_name: str = "otel_logs"

    @field_validator("database", "traces_table_name", "events_table_name", "logs_table_name")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class TableNames(Protocol):
    """Where the tables are (the `clickhouse` and `chdb` exporters' shared config keys) and their retention."""

    @property
    def database(self) -> str: ...
    @property
    def traces_table_name(self) -> str: ...
    @property
    def events_table_name(self) -> str: ...
    @property
    def logs_table_name(self) -> str: ...
    @property
    def ttl(self) -> float: ...  # seconds; 0 = keep for ever
    @property
    def events_ttl(self) -> float: ...


@dataclass(frozen=True)
class TableSpec:
    """One table an exporter instance writes: its name, columns, DDL and batch → columns."""

    table: str  # qualified and quoted
    columns: tuple[tuple[str, str], ...]
    statements: tuple[str, ...]
    batch_type: type[Traces] | type[Events] | type[Logs]
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

    def wants(self, batch: Batch) -> bool:
        """True for a non-empty batch of this table's kind."""
        return isinstance(batch, self.batch_type) and batch.item_count > 0


def traces_spec(config: TableNames) -> TableSpec:
    """The spans table, its trace-id lookup and its per-session summaries (sessions.py)."""
    statements = (*schema_statements(config.database, config.traces_table_name, config.ttl),
                  *summary_statements(config.database, config.traces_table_name, config.ttl))
    return TableSpec(qualified(config.database, config.traces_table_name), INSERT_COLUMNS, statements,
                     Traces, traces_columns, select_spans)


def events_spec(config: TableNames) -> TableSpec:
    table = qualified(config.database, config.events_table_name)
    statements = (f"CREATE DATABASE IF NOT EXISTS {quote(config.database)}",
                  *events_table_statements(table, config.events_ttl))
    return TableSpec(table, EVENTS_COLUMNS, statements, Events, events_columns, select_documents)


def logs_spec(config: TableNames) -> TableSpec:
    """The logs table (otelcol's `otel_logs`), with the spans table's retention."""
    statements = tuple(logs_statements(config.database, config.logs_table_name, config.ttl))
    return TableSpec(qualified(config.database, config.logs_table_name), LOGS_COLUMNS, statements,
                     Logs, logs_columns, select_logs)


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


def table_spec(signal: Signal | None, config: TableNames) -> TableSpec:
    """The table for the pipeline type an exporter instance serves (traces unless events or logs)."""
    if signal == Signal.EVENTS:
        return events_spec(config)
    return logs_spec(config) if signal == Signal.LOGS else traces_spec(config)


def slice_columns(columns: list[Sequence], start: int, stop: int) -> list[Sequence]:
    """Rows [start, stop) of column-oriented insert data (the data itself for all of it)."""
    if start == 0 and stop == len(columns[0]):
        return columns
    return [column[start:stop] for column in columns]

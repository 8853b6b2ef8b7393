"""`chdb`: spans into the embedded ClickHouse engine (chDB), in a local data directory.

In an `events` pipeline it writes trigger events and safety decisions to the audit table
`events_table_name` (`agentdbg_decisions`; pipeline/clickhouse/audit.py) in the same engine,
through the same Native insert path and error mapping.

The same `otel_traces` schema (pipeline/clickhouse/schema.py) and the same column path as
the `clickhouse` exporter: the batch's `SpanColumns` → `insert_columns` → Native blocks
(clickhouse-connect's serializer) written to an in-memory file (`memfd`) → one
`INSERT ... SELECT ... FROM file('/proc/self/fd/N', 'Native')` statement. Not chDB's streaming
`send_insert`, although it was measured cheapest (`python -m benchmarks.bench_columns`,
benchmarks/RESULTS.md "chDB insert paths"; a file costs 8-17 % more CPU): in chDB 4.4 a
streamed insert that the engine refuses (a violated table constraint, more than
`max_partitions_per_insert_block` partitions) returns from `finish()` without an error and
stores nothing, so a refusal could never be seen, let alone isolated. A statement raises the
engine's error.

What it promises:
- restarts are safe: the data directory is a ClickHouse data path; every acknowledged
  insert is a committed MergeTree part, found again at the next start; appends continue;
- one process per directory: at start it takes an exclusive `flock` on
  `<path>/agentdbg.lock` (holding its pid) and fails with an error naming the directory and
  the other process's pid when someone holds it. chDB allows no second process on a
  directory, not even a read-only one (its `status` file lock), which is why
  `agentdbg query` needs the daemon stopped (or `--snapshot`);
- chDB hosts one data directory per process: a second `chdb` exporter in the same daemon
  must use the same `path` (it then shares the engine; a config reload hands it over);
- chDB calls never run on the event loop: one writer thread per directory does the column
  preparation, the serialisation and the insert, in batch order;
- when chDB is slow, batches wait in the bounded queue (full → the receiver refuses,
  retryably). `timeout` is 0 (none) by default: a local insert that has started always
  completes, so timing it out would only cause duplicates. If a timeout is set and fires,
  the next attempt waits for the same insert instead of writing the batch again;
- a batch stored before a crash and sent again after the restart (the persistent queue
  removes a batch's file only after its insert; the batch processor's write-ahead log replays
  what it had handed on) is not stored twice: each insert carries the batch's content hash as
  its `insert_deduplication_token`, and the tables keep the last tokens (pipeline/clickhouse/schema.py);
- values a column cannot hold are clamped and the span marked (schema.py "Limits"); rows the
  engine still refuses are isolated by bisection, every good row is stored, and the refused
  ones are counted (`error_type="invalid_data"`), logged once per batch and kept in
  `dead_letter` (default: `dead_letter/` beside `path`, one subdirectory per exporter id;
  exporters/clickhousehelper/exporter.py). Everything else (disk full, too many parts, memory) is retried.
"""
from __future__ import annotations

import asyncio
import functools
import os
from typing import Any, Sequence

from exporters.clickhousehelper import InsertRows, TableExporter, TablesConfig
from exporters.helper import QueueSettings
from pipeline.chdb_engine import ChdbStore
from pipeline.clickhouse.errors import classify
from pipeline.clickhouse.schema import COLUMN_NAMES, COLUMN_TYPES, INSERT_SETTINGS, quote
from pipeline.clickhouse.tables import TableSpec, preload_insert_modules, slice_columns
from pipeline.component import Factory, Kind, Settings, Signal
from pipeline.config.units import Duration

# The engine, its lock and its threads live in pipeline/chdb_engine.py: the explorer reads the
# same engine and `agentdbg query` takes the same lock.


class ChdbConfig(TablesConfig):
    path: str = "./data/chdb"
    timeout: Duration = 0.0
    sending_queue: QueueSettings = QueueSettings(num_consumers=1)


def native_chunks(table: str, columns: list, names: Sequence[str] = COLUMN_NAMES,
                  types: Sequence[str] = COLUMN_TYPES) -> Any:
    """The Native-format blocks of an insert, from clickhouse-connect's serializer (as HTTP sends them)."""
    from clickhouse_connect.driver.insert import InsertContext
    from clickhouse_connect.driver.transform import NativeTransform

    context = InsertContext(table, list(names), list(_column_types(tuple(types))), columns, column_oriented=True)
    first = True
    for chunk in NativeTransform.build_insert(context, _raise):  # a value it cannot encode raises here
        if first:  # the first chunk starts with "INSERT ... FORMAT Native\n"
            chunk = chunk[chunk.index(b"\n") + 1:]
            first = False
        yield chunk


@functools.lru_cache(maxsize=None)
def _column_types(type_names: tuple[str, ...]) -> tuple[Any, ...]:
    from clickhouse_connect.datatypes.registry import get_from_name

    return tuple(get_from_name(name) for name in type_names)


def _raise(exc: Exception) -> None:
    raise exc


def insert_statement(spec: TableSpec, path: str, token: str) -> str:
    """INSERT of the Native file at `path` into the spec's table (settings: schema.py "Limits"),
    deduplicated by `token` (hex digits, ':' and '-': nothing to escape)."""
    names = ", ".join(quote(name) for name in spec.names)
    settings = ", ".join([*(f"{key} = {value}" for key, value in INSERT_SETTINGS.items()),
                          f"insert_deduplication_token = '{token}'"])
    return (f"INSERT INTO {spec.table} ({names}) SELECT {names} FROM file('{path}', 'Native') "
            f"SETTINGS {settings}")


def insert_rows(conn: Any, spec: TableSpec, columns: list, token: str) -> None:
    """Writer thread: the rows as Native blocks in a memory file, one INSERT statement; errors classified."""
    fd = os.memfd_create("agentdbg-insert", os.MFD_CLOEXEC)
    try:
        with open(fd, "wb", closefd=False) as native:
            try:
                for chunk in native_chunks(spec.table, columns, spec.names, spec.types):
                    native.write(chunk)
            except Exception as exc:  # the serializer refused a value: the engine never saw the rows
                raise classify(exc) from exc
        try:
            conn.query(insert_statement(spec, f"/proc/self/fd/{fd}", token), "TabSeparated")
        except Exception as exc:
            raise classify(exc) from exc
    finally:
        os.close(fd)


def run_statements(conn: Any, statements: list[str]) -> None:
    for statement in statements:
        conn.query(statement, "TabSeparated")


# -- the exporter ---------------------------------------------------------------------------------

class ChdbExporter(TableExporter):
    def __init__(self, settings: Settings, config: ChdbConfig) -> None:
        # One writer: the engine's writer thread serialises inserts anyway, and one consumer keeps
        # batch order and lets a timed-out attempt be awaited again instead of written twice.
        config = config.model_copy(update={"sending_queue": config.sending_queue.model_copy(
            update={"num_consumers": 1})})
        beside = os.path.join(os.path.dirname(os.path.abspath(config.path)), "dead_letter")
        super().__init__(settings, config, beside)
        self.chdb_config = config
        self.store: ChdbStore | None = None
        self._inflight: tuple[InsertRows, tuple[int, int], asyncio.Future[None]] | None = None

    async def start_client(self) -> None:
        self.store = await ChdbStore.acquire(self.chdb_config.path)
        try:
            await self.store.call(preload_insert_modules)
            if self.chdb_config.create_schema:
                await self.store.call(run_statements, self.store.conn, list(self.spec.statements))
        except BaseException:
            await self.store.release()
            self.store = None
            raise
        self.log.info("chdb store ready", extra={"kv": {"path": self.store.path, "table": self.table}})

    async def in_worker(self, func: Any, *args: Any) -> Any:
        assert self.store is not None
        return await self.store.call(func, *args)

    async def insert_rows(self, rows: InsertRows, start: int, stop: int) -> None:
        """Insert rows [start, stop) in the writer thread; a retry after a timeout awaits the same insert."""
        assert self.store is not None
        inflight = self._inflight
        if inflight is None or inflight[0] is not rows or inflight[1] != (start, stop):
            future = asyncio.get_running_loop().run_in_executor(
                self.store.pool, insert_rows, self.store.conn, self.spec, slice_columns(rows.columns, start, stop),
                rows.token_of(start, stop))
            inflight = self._inflight = (rows, (start, stop), future)
        future = inflight[2]
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            # The attempt timed out. Keep the insert, even one that completed in this same
            # moment: the retry then awaits it instead of writing the rows a second time.
            raise
        except BaseException:
            self._inflight = None
            raise
        self._inflight = None

    async def stop_client(self) -> None:
        if self._inflight is not None:  # let a write that started finish before closing the engine
            await asyncio.gather(self._inflight[2], return_exceptions=True)
        if self.store is not None:
            await self.store.release()
            self.store = None


factory = Factory("chdb", Kind.EXPORTER, ChdbConfig, ChdbExporter,
                  signals=frozenset({Signal.TRACES, Signal.LOGS, Signal.EVENTS}),
                  description="store spans (and trigger events / decisions, in an audit table) in the embedded "
                              "ClickHouse engine (chDB) in a local directory")

"""`clickhouse`: spans into ClickHouse over its HTTP interface (otelcol clickhouseexporter schema).

Each batch is inserted as one column-oriented `INSERT ... FORMAT Native` (clickhouse-connect's
async client) built from the batch's shared `SpanColumns`: no row dicts, no JSON. With
`create_schema` the exporter creates the database, the `otel_traces` table, the
`otel_traces_trace_id_ts` lookup table and its materialized view (`pipeline/clickhouse/schema.py`,
the same DDL the `chdb` exporter uses) before its first insert.

In an `events` pipeline it writes trigger events and safety decisions, one row per document, to
the audit table `events_table_name` (`agentdbg_decisions`, a ReplacingMergeTree keyed so that a
redelivered document collapses; pipeline/clickhouse/audit.py), with the same insert path and
the same error mapping.

What it promises when ClickHouse is slow, down or refuses:
- it never blocks the pipeline: batches wait in its own bounded queue (`sending_queue`);
  when that is full the receiver tells clients to retry (counted as enqueue-failed);
- ClickHouse down at start does not stop the daemon: it connects (and creates the schema)
  on the first send that can reach the server, and keeps retrying until then;
- each insert is bounded by `timeout`; a timeout, a connection error, overload
  (`TOO_MANY_PARTS`, `MEMORY_LIMIT_EXCEEDED`, HTTP 503) or any error that is not about the
  data is retried with backoff (`retry_on_failure`), so a batch whose insert timed out after
  the server stored it can arrive twice (at-least-once; duplicates, never gaps);
- values a column cannot hold are clamped and the span marked (schema.py "Limits");
- an error that says some rows are bad (cannot parse, out of range, too large, a table
  constraint ...; errors.py) costs only those rows: the batch is bisected, every good row
  is stored, the refused rows are counted in
  `otelcol_exporter_send_failed_spans{error_type="invalid_data"}`, logged once per batch
  and kept in `dead_letter` (default `./data/dead_letter/<exporter id>/`; rows.py); an
  error about the statement itself (unknown column, syntax) refuses the batch under the
  ClickHouse error name, dead-lettered too. The queue moves on either way.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from pydantic import field_validator

from exporters.clickhousehelper import TableExporter, TablesConfig
from pipeline.clickhouse.errors import classify
from pipeline.clickhouse.schema import INSERT_SETTINGS
from pipeline.clickhouse.tables import preload_insert_modules, slice_columns
from pipeline.component import Factory, Kind, Settings, Signal
from pipeline.errors import RetryableError

if TYPE_CHECKING:  # imported when the first client connects (clickhouse_connect is slow to import)
    from clickhouse_connect.driver.asyncclient import AsyncClient


class ClickHouseConfig(TablesConfig):
    endpoint: str
    username: str = ""
    password: str = ""
    async_insert: bool = True
    compress: Literal["lz4", "zstd", "none"] = "lz4"

    @field_validator("endpoint")
    @classmethod
    def _http_only(cls, value: str) -> str:
        url = urlparse(value)
        if url.scheme not in ("http", "https"):
            raise ValueError(
                f"endpoint {value!r}: this exporter speaks ClickHouse's HTTP interface only; "
                "use http://host:8123 or https://host:8443 (tcp:// and clickhouse:// native-protocol "
                "endpoints are not supported)")
        if not url.hostname:
            raise ValueError(f"endpoint {value!r} has no host")
        return value


class ClickHouseExporter(TableExporter):
    def __init__(self, settings: Settings, config: ClickHouseConfig) -> None:
        super().__init__(settings, config, "./data/dead_letter")
        self.ch_config = config
        self._client: AsyncClient | None = None
        self._connect_lock = asyncio.Lock()
        asynchronous = {"async_insert": 1, "wait_for_async_insert": 1} if config.async_insert else {}
        self._insert_settings: dict[str, Any] = {**asynchronous, **INSERT_SETTINGS}

    async def start_client(self) -> None:
        """Try to connect once; an unreachable server is only logged (sends retry the connect)."""
        await asyncio.get_running_loop().run_in_executor(None, preload_insert_modules)
        try:
            await self._ensure_client()
        except Exception as exc:  # noqa: BLE001 - outages must not stop the daemon
            self.log.warning("ClickHouse not reachable at start; will connect on first send",
                             extra={"kv": {"endpoint": self.ch_config.endpoint, "error": str(exc)}})

    async def _ensure_client(self) -> AsyncClient:
        if self._client is not None:
            return self._client
        async with self._connect_lock:
            if self._client is None:
                client = await self._connect()
                try:
                    if self.ch_config.create_schema:
                        await self._create_schema(client)
                except BaseException:
                    await client.close()
                    raise
                self._client = client
        return self._client

    async def _connect(self) -> AsyncClient:
        import clickhouse_connect

        url = urlparse(self.ch_config.endpoint)
        secure = url.scheme == "https"
        try:
            return await clickhouse_connect.get_async_client(
                host=url.hostname, port=url.port or (8443 if secure else 8123), secure=secure,
                username=self.ch_config.username or None, password=self.ch_config.password,
                compress=False if self.ch_config.compress == "none" else self.ch_config.compress,
                connect_timeout=self.config.timeout or 10, send_receive_timeout=max(self.config.timeout, 30),
                autogenerate_session_id=False)
        except Exception as exc:  # never permanent: the server may come (back) up
            error = classify(exc, "connect")
            raise RetryableError(str(error), error_type=error.error_type) from exc

    async def _create_schema(self, client: AsyncClient) -> None:
        for statement in self.spec.statements:
            try:
                await client.command(statement)
            except Exception as exc:  # a schema problem is fixed on the server, never by dropping data
                error = classify(exc, "schema creation")
                raise RetryableError(str(error), error_type=error.error_type) from exc
        self.log.info("ClickHouse schema ready", extra={"kv": {"table": self.table}})

    async def insert_rows(self, rows: list, start: int, stop: int) -> None:
        client = await self._ensure_client()
        try:
            await client.insert(self.table, slice_columns(rows, start, stop), column_names=self.spec.names,
                                column_type_names=self.spec.types, column_oriented=True,
                                settings=self._insert_settings)
        except (asyncio.CancelledError, RetryableError):
            raise
        except Exception as exc:
            raise classify(exc) from exc

    async def stop_client(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


factory = Factory("clickhouse", Kind.EXPORTER, ClickHouseConfig, ClickHouseExporter,
                  signals=frozenset({Signal.TRACES, Signal.LOGS, Signal.EVENTS}),
                  description="insert spans into ClickHouse over HTTP (otelcol clickhouseexporter schema), "
                              "and trigger events / decisions into an audit table")

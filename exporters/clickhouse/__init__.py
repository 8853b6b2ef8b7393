"""`clickhouse`: spans into ClickHouse over its HTTP interface (otelcol clickhouseexporter schema).

Each batch is inserted as one column-oriented `INSERT ... FORMAT Native` (clickhouse-connect's
async client) built from the batch's shared `SpanColumns`: no row dicts, no JSON. With
`create_schema` the exporter creates the database, the `otel_traces` table, the
`otel_traces_trace_id_ts` lookup table and its materialized view (`exporters/clickhouse/schema.py`,
the same DDL the `chdb` exporter uses) before its first insert.

In an `events` pipeline it writes trigger events and safety decisions, one row per document, to
the audit table `events_table_name` (`agentdbg_decisions`, a ReplacingMergeTree keyed so that a
redelivered document collapses; exporters/clickhouse/audit.py), with the same insert path and
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
- an error that says the data itself is bad (cannot parse, type mismatch, too large ...)
  is permanent: the batch is dropped, counted in `otelcol_exporter_send_failed_spans`
  under the ClickHouse error name, and logged; the queue moves on.
"""
from __future__ import annotations

import asyncio
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import field_validator

from exporters.clickhouse.errors import classify
from exporters.clickhouse.tables import TableSpec, TablesConfig, preload_insert_modules, table_spec
from exporters.helper import QueuedExporter
from pipeline.component import Factory, Kind, Settings, Signal
from pipeline.errors import RetryableError


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


class ClickHouseExporter(QueuedExporter):
    def __init__(self, settings: Settings, config: ClickHouseConfig) -> None:
        super().__init__(settings, config)
        self.ch_config = config
        self.spec: TableSpec = table_spec(settings.signal, config)
        self.table = self.spec.table
        self._client: Any = None
        self._connect_lock = asyncio.Lock()
        self._insert_settings = {"async_insert": 1, "wait_for_async_insert": 1} if config.async_insert else {}

    async def start_client(self) -> None:
        """Try to connect once; an unreachable server is only logged (sends retry the connect)."""
        await asyncio.get_running_loop().run_in_executor(None, preload_insert_modules)
        try:
            await self._ensure_client()
        except Exception as exc:  # noqa: BLE001 - outages must not stop the daemon
            self.log.warning("ClickHouse not reachable at start; will connect on first send",
                             extra={"kv": {"endpoint": self.ch_config.endpoint, "error": str(exc)}})

    async def _ensure_client(self) -> Any:
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

    async def _connect(self) -> Any:
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

    async def _create_schema(self, client: Any) -> None:
        for statement in self.spec.statements:
            try:
                await client.command(statement)
            except Exception as exc:  # a schema problem is fixed on the server, never by dropping data
                error = classify(exc, "schema creation")
                raise RetryableError(str(error), error_type=error.error_type) from exc
        self.log.info("ClickHouse schema ready", extra={"kv": {"table": self.table}})

    async def send(self, batch: Any) -> None:
        if not self.spec.wants(batch):
            return
        client = await self._ensure_client()
        loop = asyncio.get_running_loop()
        # Off the event loop: building attribute maps is CPU work.
        columns = await loop.run_in_executor(None, self.spec.to_columns, batch)
        try:
            await client.insert(self.table, columns, column_names=self.spec.names, column_type_names=self.spec.types,
                                column_oriented=True, settings=self._insert_settings)
        except (asyncio.CancelledError, RetryableError):
            raise
        except Exception as exc:
            raise classify(exc) from exc

    async def stop_client(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


factory = Factory("clickhouse", Kind.EXPORTER, ClickHouseConfig, ClickHouseExporter,
                  signals=frozenset({Signal.TRACES, Signal.EVENTS}),
                  description="insert spans into ClickHouse over HTTP (otelcol clickhouseexporter schema), "
                              "and trigger events / decisions into an audit table")

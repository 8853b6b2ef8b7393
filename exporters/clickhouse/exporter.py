"""`clickhouse`: spans into ClickHouse over HTTP, as column-oriented Native inserts (clickhouse-connect, async).

What it promises when the server is slow, down or refuses is in the package docstring
(exporters/clickhouse/__init__.py).
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from exporters.clickhouse.config import ClickHouseConfig
from exporters.clickhousehelper import InsertRows, TableExporter
from pipeline.clickhouse.errors import classify
from pipeline.clickhouse.schema import INSERT_SETTINGS
from pipeline.clickhouse.tables import preload_insert_modules, slice_columns
from pipeline.component import Settings
from pipeline.errors import RetryableError

if TYPE_CHECKING:  # imported when the first client connects (clickhouse_connect is slow to import)
    from clickhouse_connect.driver.asyncclient import AsyncClient


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

    async def insert_rows(self, rows: InsertRows, start: int, stop: int) -> None:
        """Insert rows [start, stop); a retry sends the same deduplication token, so a timed-out
        attempt that the server stored is not stored again."""
        client = await self._ensure_client()
        settings = {**self._insert_settings, "insert_deduplication_token": rows.token_of(start, stop)}
        try:
            await client.insert(self.table, slice_columns(rows.columns, start, stop), column_names=self.spec.names,
                                column_type_names=self.spec.types, column_oriented=True, settings=settings)
        except (asyncio.CancelledError, RetryableError):
            raise
        except Exception as exc:
            raise classify(exc) from exc

    async def stop_client(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

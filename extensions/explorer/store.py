"""Where the explorer reads: the `Store` protocol and its two implementations.

- `ChdbReader`: the embedded engine of this process (pipeline/chdb_engine.py), read on its
  reader thread with a read-only connection while the `chdb` exporter writes on its own;
- `ClickHouseReader`: a ClickHouse server over HTTP (clickhouse-connect), every statement
  sent with `readonly = 2` (the server refuses writes and DDL; the client may still send its
  own format settings).

Both bind values as query parameters (`{name:Type}` placeholders, bound by the engine):
no SQL text is ever built from what a user typed. Both answer rows as dicts of JSON-ready
values (times as integer nanoseconds, maps as objects) and raise `StoreError` with the
engine's message.
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol

from pipeline.chdb_engine import ChdbStore, ReadError


class StoreError(RuntimeError):
    """The store refused or failed a read; `missing` when a table does not exist (yet)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.missing = "UNKNOWN_TABLE" in message or "UNKNOWN_DATABASE" in message


class Store(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...

    async def raw(self, sql: str, fmt: str) -> bytes: ...


class ChdbReader:
    """The process's chDB engine: the one the `chdb` exporter opened (`path` ""), or `path`'s."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._store: ChdbStore | None = None
        self._owned = False

    async def start(self) -> None:
        if self.path:
            self._store = await ChdbStore.acquire(self.path)
            self._owned = True

    async def close(self) -> None:
        if self._owned and self._store is not None:
            await self._store.release()
        self._store = None

    def _engine(self) -> ChdbStore:
        if self._store is not None:
            return self._store
        opened = ChdbStore.current()
        if opened is None:
            raise StoreError("no chdb store is open in this process (is a chdb exporter configured and started?); "
                             "set extensions::explorer::path to open one")
        return opened

    async def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        try:
            return await self._engine().read(sql, params)
        except ReadError as exc:
            raise StoreError(str(exc)) from None

    async def raw(self, sql: str, fmt: str) -> bytes:
        try:
            return await self._engine().read_raw(sql, fmt)
        except ReadError as exc:
            raise StoreError(str(exc)) from None


class ClickHouseReader:
    """A ClickHouse server over HTTP, read-only per statement."""

    SETTINGS = {"readonly": 2, "max_execution_time": 30, "output_format_json_quote_64bit_integers": 0}

    def __init__(self, endpoint: str, username: str, password: str) -> None:
        self.endpoint = endpoint
        self.username = username
        self.password = password
        self._client: Any = None

    async def start(self) -> None:
        import clickhouse_connect
        from urllib.parse import urlsplit

        url = urlsplit(self.endpoint if "://" in self.endpoint else f"http://{self.endpoint}")
        self._client = await clickhouse_connect.get_async_client(
            host=url.hostname or "localhost", port=url.port or (8443 if url.scheme == "https" else 8123),
            username=self.username, password=self.password, secure=url.scheme == "https",
            autogenerate_session_id=False)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        import orjson

        data = await self._query(sql, "JSONEachRow", params)
        return [orjson.loads(line) for line in data.splitlines() if line]

    async def raw(self, sql: str, fmt: str) -> bytes:
        return await self._query(sql, fmt, None)

    async def _query(self, sql: str, fmt: str, params: Mapping[str, Any] | None) -> bytes:
        if self._client is None:
            raise StoreError("the ClickHouse client is not started")
        try:
            return await self._client.raw_query(sql, parameters=dict(params or {}), settings=self.SETTINGS, fmt=fmt)
        except Exception as exc:  # noqa: BLE001 - the server's message is the answer
            raise StoreError(" ".join(str(exc).split())) from None

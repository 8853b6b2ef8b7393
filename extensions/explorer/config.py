"""The `explorer` extension's config."""
from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from pipeline.clickhouse.tables import TableLocation
from pipeline.component import StrictConfig
from pipeline.config.auth import AuthConfig
from pipeline.netaddr import Endpoint


class ClickHouseConfig(StrictConfig):
    """A ClickHouse server over HTTP (clickhouse-connect), for `store: clickhouse`."""

    endpoint: str = "http://localhost:8123"
    username: str = "default"
    password: str = ""


class ExplorerConfig(TableLocation):
    """The explorer's address, auth and store; the table keys (`database`, `*_table_name`) are the exporters'."""

    endpoint: Endpoint = "localhost:10207"
    # With a token the UI asks for it once and keeps it for the tab; the page and its assets are public.
    auth: AuthConfig = AuthConfig()
    # `chdb`: the embedded engine of this process. `path` "" reads the directory the `chdb`
    # exporter opened; a path opens (or shares) the engine on that directory.
    store: Literal["chdb", "clickhouse"] = "chdb"
    path: str = ""
    clickhouse: ClickHouseConfig = ClickHouseConfig()
    # Where the UI links for the safety processor's live state (/debug/breakers ...).
    debug_api_url: str = "http://localhost:10205"
    # Rows a list answers at most (sessions, triggers, decisions); a query may ask for fewer.
    max_rows: int = 1000

    @field_validator("max_rows")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

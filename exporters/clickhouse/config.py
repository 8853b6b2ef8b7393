"""Config of the `clickhouse` exporter: the shared table keys plus the HTTP endpoint and its login."""
from __future__ import annotations

from typing import Literal
from urllib.parse import urlparse

from pydantic import field_validator

from exporters.clickhousehelper import TablesConfig


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

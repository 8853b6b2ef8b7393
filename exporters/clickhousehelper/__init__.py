"""What the `clickhouse` and `chdb` exporters share, as otelcol's exporterhelper is shared by its exporters.

- `TablesConfig` (config.py): the keys both exporters take: database, table names, retention,
  `create_schema`, `dead_letter`;
- `TableExporter` (exporter.py): one table per exporter instance, rows stored by isolation
  (bad rows bisected out and dead-lettered, every good row stored).

The tables themselves (DDL, insert columns, the audit table, the error classification) are
storage code that the explorer reads too, so they live in pipeline/clickhouse/. This room
holds only what is about being an exporter, and it imports no component.
"""
from __future__ import annotations

from exporters.clickhousehelper.config import TablesConfig
from exporters.clickhousehelper.exporter import InsertRows, TableExporter

__all__ = ["InsertRows", "TableExporter", "TablesConfig"]

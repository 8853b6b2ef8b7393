"""The base of the `clickhouse` and `chdb` exporters: one table per instance, rows stored by isolation.

`TableExporter` writes a batch as column-oriented insert data built once (`TableSpec.to_columns`,
off the event loop, with the values a column cannot hold clamped: pipeline/clickhouse/schema.py
"Limits"). When the engine refuses the insert because of some rows (`InvalidData`,
pipeline/clickhouse/errors.py), the rows are bisected (exporters/helper/isolate.py): every good
row is stored, the refused ones are counted under
`otelcol_exporter_send_failed_spans{error_type="invalid_data"}`, logged once per batch with the
engine's reason, and kept, as sent, in a dead-letter file under `dead_letter/<exporter id>/`
(exporters/helper/dead_letter.py). The queue then moves on: a batch with bad rows never holds
back the batches behind it.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from exporters.clickhousehelper.config import TablesConfig
from exporters.helper.dead_letter import DeadLetters
from exporters.helper.isolate import IsolatingExporter
from pipeline.clickhouse.tables import TableSpec, table_spec
from pipeline.component import Settings
from pipeline.errors import PartialFailure
from pipeline.pdata.batch import Batch
from pipeline.pdata.events import Events
from pipeline.pdata.logs import Logs
from pipeline.pdata.traces import Traces

T = TypeVar("T")


class TableExporter(IsolatingExporter[Traces | Events | Logs, list[Sequence]]):
    def __init__(self, settings: Settings, config: TablesConfig, default_dead_letter: str) -> None:
        super().__init__(settings, config)
        self.spec: TableSpec = table_spec(settings.signal, config)
        self.table = self.spec.table
        directory = Path(config.dead_letter or default_dead_letter) / str(settings.id).replace("/", "_")
        self.dead_letters = DeadLetters(directory)

    async def send(self, batch: Traces | Events | Logs) -> list[PartialFailure] | None:
        if not self.spec.wants(batch):
            return None
        return await self.send_rows(batch)

    async def in_worker(self, func: Callable[..., T], *args: Any) -> T:
        """Run CPU work off the event loop (the chdb exporter uses its writer thread)."""
        return await asyncio.get_running_loop().run_in_executor(None, func, *args)

    async def prepare(self, batch: Traces | Events | Logs) -> list[Sequence]:
        return await self.in_worker(self.spec.to_columns, batch)

    def row_count(self, rows: list[Sequence]) -> int:
        return len(rows[0]) if rows else 0

    def refused_batch(self, batch: Traces | Events | Logs, indices: list[int]) -> Batch:
        return self.spec.select(batch, indices)

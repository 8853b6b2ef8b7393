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

Every insert carries an `insert_deduplication_token` (`InsertRows.token_of`): a hash of the
batch as the on-disk queue encodes it (pipeline/pdata/batch_codec.py), with the row range. A
retry of a range sends the same token, and so does the same batch replayed after a restart
(from the persistent queue, or re-merged from the batch processor's write-ahead log), so an
insert that timed out after the engine stored it is not stored again: the tables keep the last
tokens (pipeline/clickhouse/schema.py, "Retries never store a row twice").
"""
from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from exporters.clickhousehelper.config import TablesConfig
from exporters.helper.dead_letter import DeadLetters
from exporters.helper.isolate import IsolatingExporter
from pipeline.clickhouse.tables import TableSpec, table_spec
from pipeline.component import Settings
from pipeline.errors import PartialFailure
from pipeline.pdata import batch_codec
from pipeline.pdata.batch import Batch
from pipeline.pdata.events import Events
from pipeline.pdata.logs import Logs
from pipeline.pdata.traces import Traces

T = TypeVar("T")


@dataclass(frozen=True)
class InsertRows:
    """A batch's column-oriented insert data and the content hash its inserts are deduplicated by."""

    columns: list[Sequence]
    digest: str

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def token_of(self, start: int, stop: int) -> str:
        """The `insert_deduplication_token` of rows [start, stop): the same for every attempt."""
        return f"{self.digest}:{start}-{stop}"


def content_digest(batch: Batch) -> str:
    """A hash of the batch's stored form: equal for a batch and its replay after a restart."""
    tag, body = batch_codec.encode_parts(batch)
    return hashlib.blake2b(body, digest_size=16, person=tag).hexdigest()


class TableExporter(IsolatingExporter[Traces | Events | Logs, InsertRows]):
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

    async def prepare(self, batch: Traces | Events | Logs) -> InsertRows:
        return await self.in_worker(self._insert_rows, batch)

    def _insert_rows(self, batch: Traces | Events | Logs) -> InsertRows:
        return InsertRows(self.spec.to_columns(batch), content_digest(batch))

    def refused_batch(self, batch: Traces | Events | Logs, indices: list[int]) -> Batch:
        return self.spec.select(batch, indices)

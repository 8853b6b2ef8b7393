"""`file`: append what arrives to a local file (otelcol's file exporter formats).

`format: json` writes one OTLP/JSON request per line; `format: proto` writes each
request's protobuf bytes behind a 4-byte big-endian length. With `rotation`, the file is
renamed `<name>-<UTC timestamp><ext>` once it would pass `max_megabytes`, keeping at most
`max_backups` old files. Writes go through the exporter helper's queue with a single
writer (order kept); a write that fails (disk full) is retried like any other send, and
the file is flushed every `flush_interval` and at shutdown.
"""
from __future__ import annotations

import asyncio
import os
import struct
import time
from pathlib import Path
from typing import IO, Literal

from pydantic import NonNegativeInt, PositiveInt

from exporters.helper import ExporterHelperConfig, QueuedExporter, QueueSettings
from pipeline import otlp_json
from pipeline.component import Factory, Kind, Settings, Signal, StrictConfig
from pipeline.config.units import Duration
from pipeline.errors import RetryableError
from pipeline.pdata.batch import OtlpBatch
from pipeline.pdata.events import Events
from pipeline.private_files import open_private, private_dir


class RotationConfig(StrictConfig):
    max_megabytes: PositiveInt = 100
    max_backups: NonNegativeInt = 100


class FileConfig(ExporterHelperConfig):
    path: str
    format: Literal["json", "proto"] = "json"
    rotation: RotationConfig | None = None
    flush_interval: Duration = 1.0
    sending_queue: QueueSettings = QueueSettings(num_consumers=1)


class FileExporter(QueuedExporter[OtlpBatch | Events]):
    def __init__(self, settings: Settings, config: FileConfig) -> None:
        # One writer keeps lines whole and in order.
        config = config.model_copy(update={"sending_queue": config.sending_queue.model_copy(
            update={"num_consumers": 1})})
        super().__init__(settings, config)
        self.file_config = config
        self.path = Path(config.path)
        self._file: IO[bytes] | None = None
        self._size = 0
        self._flusher: asyncio.Task[None] | None = None

    async def start_client(self) -> None:
        private_dir(self.path.parent)
        self._open()
        self._flusher = asyncio.create_task(self._flush_loop(), name=f"{self.id}-flush")

    def _open(self) -> None:
        self._file = open_private(self.path, "ab")
        self._size = self._file.tell()

    def encode(self, batch: OtlpBatch | Events) -> bytes:
        if self.file_config.format == "proto":
            wire = batch.wire() if isinstance(batch, OtlpBatch) else batch.to_json_line()
            return struct.pack(">I", len(wire)) + wire
        if isinstance(batch, OtlpBatch):
            return otlp_json.encode(batch.message) + b"\n"
        return batch.to_json_line()

    async def send(self, batch: OtlpBatch | Events) -> None:
        record = self.encode(batch)
        try:
            self._rotate_if_needed(len(record))
            assert self._file is not None
            self._file.write(record)
        except OSError as exc:
            raise RetryableError(f"cannot write {self.path}: {exc.strerror}", error_type="io") from exc
        self._size += len(record)

    def _rotate_if_needed(self, incoming: int) -> None:
        rotation = self.file_config.rotation
        if rotation is None or self._size == 0 or self._size + incoming <= rotation.max_megabytes * 1024 * 1024:
            return
        assert self._file is not None
        self._file.close()
        stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}"
        self.path.rename(self.path.with_name(f"{self.path.stem}-{stamp}{self.path.suffix}"))
        backups = sorted(self.path.parent.glob(f"{self.path.stem}-*{self.path.suffix}"))
        for old in backups[:max(0, len(backups) - rotation.max_backups)]:
            old.unlink(missing_ok=True)
        self._open()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.file_config.flush_interval)
            if self._file:
                self._file.flush()

    async def stop_client(self) -> None:
        if self._flusher:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._file:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None


factory = Factory("file", Kind.EXPORTER, FileConfig, FileExporter,
                  signals=frozenset({Signal.TRACES, Signal.METRICS, Signal.LOGS, Signal.EVENTS}),
                  description="append OTLP JSON lines or length-prefixed protobuf to a file")

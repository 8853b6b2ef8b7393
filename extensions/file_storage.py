"""`file_storage`: a directory where exporters keep their sending queues (otelcol's extension).

An exporter with `sending_queue.storage: file_storage` writes every batch it accepts to
its own sub-directory before acknowledging it, and deletes the file once the batch was
sent (or failed permanently, which is counted). After a crash, a SIGKILL or a shutdown
whose deadline passed, the next start sends what the files still hold, oldest first:
at least once, never lost. With `fsync: true` each file is flushed to the disk before the
acknowledgement (surviving power loss, at the cost of a disk flush per batch); without
it a process crash loses nothing but a machine crash may.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator

from pipeline import batch_codec
from pipeline.component import Component, Factory, Kind, Settings, StrictConfig

SUFFIX = ".batch"


class FileStorageConfig(StrictConfig):
    directory: str = "./data/queue"
    fsync: bool = False
    create_directory: bool = True


class BatchStore:
    """One exporter's files: `<seq>.batch`, in the order they were accepted."""

    def __init__(self, directory: Path, fsync: bool) -> None:
        self.directory = directory
        self.fsync = fsync
        directory.mkdir(parents=True, exist_ok=True)
        existing = [int(p.stem) for p in directory.glob(f"*{SUFFIX}") if p.stem.isdigit()]
        self.next_seq = max(existing, default=0) + 1

    def recover(self) -> Iterator[tuple[Any, Path]]:
        """The batches left by an earlier run, oldest first (unreadable files are set aside)."""
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            try:
                yield batch_codec.decode(path.read_bytes()), path
            except (OSError, ValueError) as exc:
                path.rename(path.with_suffix(".corrupt"))
                raise ValueError(f"{path}: {exc}; moved aside as .corrupt") from exc

    def put(self, batch: Any) -> Path:
        path = self.directory / f"{self.next_seq:020d}{SUFFIX}"
        self.next_seq += 1
        temp = path.with_suffix(".tmp")
        with open(temp, "wb") as handle:
            handle.write(batch_codec.encode(batch))
            if self.fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, path)
        return path

    @staticmethod
    def remove(path: Path) -> None:
        path.unlink(missing_ok=True)


class FileStorage(Component):
    def __init__(self, settings: Settings, config: FileStorageConfig) -> None:
        super().__init__(settings)
        self.config = config
        root = Path(config.directory)
        if not root.exists() and not config.create_directory:
            raise ValueError(f"file_storage directory {root} does not exist (create_directory is false)")

    def open_store(self, owner: str) -> BatchStore:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", owner)
        return BatchStore(Path(self.config.directory) / safe, self.config.fsync)


factory = Factory("file_storage", Kind.EXTENSION, FileStorageConfig, FileStorage,
                  description="a directory for persistent sending queues")

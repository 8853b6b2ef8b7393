"""`file_storage`: a directory where exporters keep their sending queues (otelcol's extension).

An exporter with `sending_queue.storage: file_storage` writes every batch it accepts to
its own sub-directory before acknowledging it, and deletes the file once the batch was
sent (or failed permanently, which is counted). After a crash, a SIGKILL or a shutdown
whose deadline passed, the next start sends what the files still hold, oldest first:
at least once, never lost. With `fsync: true` each file is flushed to the disk before the
acknowledgement (surviving power loss, at the cost of a disk flush per batch); without
it a process crash loses nothing but a machine crash may.

A processor that holds data before the exporters (the batch processor, while it merges)
keeps a write-ahead log here (`open_log`): every batch it answers OK for is appended to a
segment file first, and the segment is deleted once the exporters took what it held.
"""
from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Any, Iterator

from pipeline.component import Component, Factory, Kind, Settings, StrictConfig
from pipeline.pdata import batch_codec
from pipeline.pdata.batch import Batch
from pipeline.private_files import FILE_MODE, open_private, private_dir

SUFFIX = ".batch"
WAL_SUFFIX = ".wal"
# A log record: payload length and CRC-32, then the payload (batch_codec's encoding).
RECORD_HEADER = struct.Struct("<II")

log = logging.getLogger("agentdbg.extension.file_storage")


class FileStorageConfig(StrictConfig):
    directory: str = "./data/queue"
    fsync: bool = False
    create_directory: bool = True


class BatchStore:
    """One exporter's files: `<seq>.batch`, in the order they were accepted."""

    def __init__(self, directory: Path, fsync: bool) -> None:
        self.directory = directory
        self.fsync = fsync
        private_dir(directory)
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

    def put(self, batch: Batch) -> Path:
        path = self.directory / f"{self.next_seq:020d}{SUFFIX}"
        self.next_seq += 1
        temp = path.with_suffix(".tmp")
        tag, body = batch_codec.encode_parts(batch)
        with open_private(temp, "wb") as handle:
            handle.write(tag)  # two writes: no copy of a merged batch's megabytes to join them
            handle.write(body)
            if self.fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, path)
        return path

    @staticmethod
    def remove(path: Path) -> None:
        path.unlink(missing_ok=True)


class Segment:
    """One segment file of a write-ahead log: records appended by one processor, in order.

    Each record is one unbuffered `writev`, so once `append` returns the record is in the
    kernel and survives the process being killed (with `fsync`, also a machine crash).
    A write that fails leaves at most a torn last record, which `read_segment` ignores:
    the batch it held was never answered OK.
    """

    def __init__(self, path: Path, fsync: bool, create: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        self._fd: int | None = None
        if create:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, FILE_MODE)

    def append(self, batch: Batch) -> None:
        assert self._fd is not None, "append to a closed segment"
        tag, body = batch_codec.encode_parts(batch)
        header = RECORD_HEADER.pack(len(tag) + len(body), zlib.crc32(body, zlib.crc32(tag)))
        written = os.writev(self._fd, (header, tag, body))
        if written != len(header) + len(tag) + len(body):
            raise OSError(f"short write to {self.path}: {written} bytes")
        if self.fsync:
            os.fdatasync(self._fd)

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def read_segment(path: Path) -> list[Any]:
    """The batches a segment holds, in order; a torn or corrupt tail is logged and ignored."""
    data = path.read_bytes()
    batches, offset = [], 0
    while offset + RECORD_HEADER.size <= len(data):
        length, crc = RECORD_HEADER.unpack_from(data, offset)
        payload = data[offset + RECORD_HEADER.size:offset + RECORD_HEADER.size + length]
        if len(payload) != length or zlib.crc32(payload) != crc:
            break
        batches.append(batch_codec.decode(payload))
        offset += RECORD_HEADER.size + length
    if offset != len(data):
        log.warning("ignoring a torn record at the end of a write-ahead log segment (never acknowledged)",
                    extra={"kv": {"path": str(path), "bytes": len(data) - offset}})
    return batches


class WriteAheadLog:
    """A processor's write-ahead log: a directory of `<seq>.wal` segments.

    One instance per directory in the process (`FileStorage.open_log` shares it), so the old
    and the new processor of a reload never reuse a sequence number, and only the first
    opener of a process gets what an earlier run left (`take_recovered`).
    """

    def __init__(self, directory: Path, fsync: bool) -> None:
        self.directory = directory
        self.fsync = fsync
        self.users = 0
        private_dir(directory)
        self._left = sorted(directory.glob(f"*{WAL_SUFFIX}"))
        seqs = [int(p.stem) for p in self._left if p.stem.isdigit()]
        self.next_seq = max(seqs, default=0) + 1

    def open_segment(self) -> Segment:
        path = self.directory / f"{self.next_seq:020d}{WAL_SUFFIX}"
        self.next_seq += 1
        return Segment(path, self.fsync)

    def take_recovered(self) -> list[tuple[list[Any], Segment]]:
        """The segments an earlier run left, oldest first, with their batches; once per process.

        `remove()` each segment once what it holds was handed on. An unreadable segment is moved
        aside as `.corrupt` and reported, never deleted.
        """
        left, self._left = self._left, []
        recovered = []
        for path in left:
            try:
                recovered.append((read_segment(path), Segment(path, self.fsync, create=False)))
            except (OSError, ValueError) as exc:
                path.rename(path.with_suffix(".corrupt"))
                log.error("unreadable write-ahead log segment moved aside",
                          extra={"kv": {"path": str(path), "error": str(exc)}})
        return recovered


    def release(self) -> None:
        """One user is done; after the last, the next opener reads the directory afresh."""
        self.users -= 1
        if self.users <= 0:
            _LOGS.pop(self.directory, None)


_LOGS: dict[Path, WriteAheadLog] = {}  # the open write-ahead logs of this process, by directory


class FileStorage(Component):
    def __init__(self, settings: Settings, config: FileStorageConfig) -> None:
        super().__init__(settings)
        self.config = config
        root = Path(config.directory)
        if not root.exists() and not config.create_directory:
            raise ValueError(f"file_storage directory {root} does not exist (create_directory is false)")

    def open_store(self, owner: str) -> BatchStore:
        return BatchStore(self._path(owner), self.config.fsync)

    def open_log(self, owner: str) -> WriteAheadLog:
        """The write-ahead log of `owner` (e.g. `batch-traces`); `release()` it when done."""
        path = self._path(owner).resolve()
        wal = _LOGS.get(path)
        if wal is None:
            wal = _LOGS[path] = WriteAheadLog(path, self.config.fsync)
        wal.fsync = self.config.fsync
        wal.users += 1
        return wal

    def _path(self, owner: str) -> Path:
        return Path(self.config.directory) / re.sub(r"[^A-Za-z0-9_.-]", "_", owner)


factory = Factory("file_storage", Kind.EXTENSION, FileStorageConfig, FileStorage,
                  description="a directory for persistent sending queues and write-ahead logs")

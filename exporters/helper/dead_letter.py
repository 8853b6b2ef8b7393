"""Dead-letter files: data a destination refused for good, kept on disk instead of dropped.

`DeadLetters(directory).keep(batch, reason)` writes one file per refused part of a batch:
`<directory>/<UTC time>-<pid>-<sequence>.batch`, holding the batch in pipeline/pdata/batch_codec's
encoding (one tag byte, `T` then an OTLP protobuf `ExportTraceServiceRequest` for spans, `E`
then JSON lines for events), and `<same name>.reason` beside it with the error text. Read one
back with `pipeline.pdata.batch_codec.decode(path.read_bytes())`; the spans can be sent again to any
OTLP endpoint once the cause is fixed.

Each file is written to a temporary name, flushed to disk and renamed, so a crash leaves no
half file under the final name. A write that fails (disk full, permissions) is logged; the
rows stay counted as failed either way.
"""
from __future__ import annotations

import itertools
import logging
import os
import time
from pathlib import Path

from pipeline.pdata import batch_codec
from pipeline.pdata.batch import Batch
from pipeline.private_files import open_private, private_dir

log = logging.getLogger("agentdbg.exporter.dead_letter")
_SEQUENCE = itertools.count()


class DeadLetters:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def keep(self, batch: Batch, reason: str) -> str:
        """Write `batch` and its `reason`; returns the file's path, or "" when it could not be written."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = self.directory / f"{stamp}-{os.getpid()}-{next(_SEQUENCE):06d}.batch"
        try:
            private_dir(self.directory)
            _write(path.with_suffix(".reason"), reason.encode("utf-8", "replace") + b"\n")
            _write(path, batch_codec.encode(batch))
        except OSError as exc:
            log.error("cannot write a dead-letter file; the refused data is lost",
                      extra={"kv": {"path": str(path), "error": str(exc)}})
            return ""
        return str(path)


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".tmp")
    with open_private(partial, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)

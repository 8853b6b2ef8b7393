"""Persist the safety state atomically (write a temp file, fsync, rename), so a restart
neither forgets an open breaker nor repeats a decision.

The file records which run of the daemon wrote it (`run`), so a reader can tell a state
handed over by a configuration reload in the same process (detector episodes still alive)
from one restored after a restart (detector episodes gone).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import orjson

from pipeline.private_files import open_private, private_dir

RUN_ID = uuid.uuid4().hex  # this process


def load(path: str | None) -> dict[str, Any] | None:
    if not path or not Path(path).exists():
        return None
    return orjson.loads(Path(path).read_bytes())


def written_by_this_run(data: dict[str, Any]) -> bool:
    return data.get("run") == RUN_ID


def save(path: str | None, data: dict[str, Any]) -> None:
    if not path:
        return
    target = Path(path)
    private_dir(target.parent)
    temp = target.with_suffix(target.suffix + ".tmp")
    with open_private(temp, "wb") as handle:
        handle.write(orjson.dumps({**data, "run": RUN_ID}))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, target)

"""Persist the safety state atomically (write a temp file, fsync, rename), so a restart
neither forgets an open breaker nor repeats a decision."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson


def load(path: str | None) -> dict[str, Any] | None:
    if not path or not Path(path).exists():
        return None
    return orjson.loads(Path(path).read_bytes())


def save(path: str | None, data: dict[str, Any]) -> None:
    if not path:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_suffix(target.suffix + ".tmp")
    with open(temp, "wb") as handle:
        handle.write(orjson.dumps(data))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, target)

"""Data files 0600 and data directories 0700, whatever the process umask.

Queued batches, WAL segments, dead letters, the chDB store and the safety state hold
customers' spans (prompts, completions, tool arguments): no other local user may read them.
The mode is given when the file or directory is created (never a world-readable window
before a chmod); a directory we create is chmod-ed too, because `mkdir`'s mode is masked by
the umask and intermediate directories would otherwise get the default mode. A directory
or file that already existed keeps its mode: it may be the operator's own (`/tmp`, a mount).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
DIR_MODE = 0o700

_FLAGS = {"wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
          "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND}


def private_dir(path: str | os.PathLike[str]) -> Path:
    """`path` and its missing parents, created 0700; returns it as a Path."""
    target = Path(path)
    missing = [p for p in (target, *target.parents) if not p.exists()]
    target.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    for created in missing:
        try:
            os.chmod(created, DIR_MODE)
        except OSError:  # made by someone else in between: theirs to keep
            pass
    return target


def open_private(path: str | os.PathLike[str], mode: str = "wb", **kwargs: Any) -> IO[Any]:
    """`open(path, mode)` ("wb", "ab" or "a+"), the file created 0600 when missing."""
    fd = os.open(path, _FLAGS[mode], FILE_MODE)
    try:
        return open(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise

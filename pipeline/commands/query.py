"""`agentdbg query "SELECT ..."`: run SQL on a `chdb` exporter's data directory and print the result.

(When the daemon runs its explorer, `query` asks it instead: explorer.py, `query_through_api`.)
The directory is the `path` of the first `chdb` exporter in the config (`--config`, default
config/default.yaml, `${env:...}` expanded as the daemon does; a relative path is relative to
the current directory, as it is for the daemon), or `--path DIR`. The lock helpers are the
embedded engine's own (pipeline/chdb_engine.py), so the daemon and this command agree on them. It is opened read-only
(chDB `mode=ro`: writes and DDL are refused).

chDB cannot open a directory that another process has open — not even read-only: the engine
takes an exclusive lock on `<dir>/status`, and the daemon holds `<dir>/agentdbg.lock`. So
while the daemon runs, `query` fails with an error naming the daemon's pid, unless
`--snapshot` is given: the directory is then copied to a temporary directory (part files,
which ClickHouse never changes after writing them, are hard links; everything else is
copied) and the query runs on the copy. The copy holds every insert the daemon had
committed when the copy started; a merge that was finishing during the copy can leave a
part the engine sets aside, never a wrong row.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from typing import IO, TYPE_CHECKING, Any

from pipeline.chdb_engine import LOCK_NAME, DirectoryInUse, lock_directory, unlock_directory
from pipeline.component import Kind

if TYPE_CHECKING:
    from pipeline.commands.explorer import ConfigLoader
    from pipeline.config.resolve import ResolvedConfig

FORMATS = {
    "table": ("PrettyCompactMonoBlock", {"output_format_pretty_color": "0"}),
    "csv": ("CSVWithNames", {}),
    "json": ("JSONEachRow", {"output_format_json_array_of_rows": "1",
                             "output_format_json_quote_64bit_integers": "0"}),
}
# A MergeTree part directory: <partition>_<min block>_<max block>_<level>[_<mutation>].
_PART = re.compile(r"^[A-Za-z0-9-]+_\d+_\d+_\d+(_\d+)?$")


class QueryError(Exception):
    pass


def path_from_config(config: ResolvedConfig, sources: list[str]) -> str:
    """The `path` of the first `chdb` exporter in the resolved config (read from `sources`)."""
    for cid, component in sorted(config.section(Kind.EXPORTER).items()):
        if cid.type == "chdb":
            return str(component.config.path)  # type: ignore[attr-defined]
    raise QueryError(f"no chdb exporter in {', '.join(sources)}; pass --path DIR")


def run_query(sql: str, path: str, fmt: str = "table", snapshot: bool = False, out: IO[bytes] | None = None) -> None:
    """Print the result of `sql` on the chdb directory `path`; raises QueryError with the reason."""
    path = os.path.realpath(path)
    if not os.path.isdir(os.path.join(path, "metadata")):
        raise QueryError(f"no chdb data in {path} (has the daemon written there yet?)")
    try:
        lock = lock_directory(path)
    except DirectoryInUse as exc:
        if not snapshot:
            who = f"process {exc.pid}" if exc.pid else "another process"
            raise QueryError(f"{path} is open in {who} (the daemon?); chDB lets one process open a data "
                             "directory, even for reading: stop it, or add --snapshot to query a copy") from None
        with tempfile.TemporaryDirectory(prefix="agentdbg-query-") as tmp:
            copy = os.path.join(tmp, "chdb")
            snapshot_directory(path, copy)
            _execute(sql, copy, fmt, out)
        return
    try:
        _execute(sql, path, fmt, out)
    finally:
        unlock_directory(lock)


def _execute(sql: str, path: str, fmt: str, out: IO[bytes] | None) -> None:
    import chdb

    output_format, settings = FORMATS[fmt]
    conn = chdb.connect(f"{path}?mode=ro")
    try:
        for key, value in settings.items():
            conn.query(f"SET {key} = {value}", "TabSeparated")
        try:
            result = conn.query(sql, output_format)
        except Exception as exc:  # noqa: BLE001 - the engine's message is the answer
            raise QueryError(f"query failed: {' '.join(str(exc).split())}") from None
        data = result.bytes() or b""
    finally:
        conn.close()
    stream = out or sys.stdout.buffer
    stream.write(data)
    if data and not data.endswith(b"\n"):
        stream.write(b"\n")
    stream.flush()


def snapshot_directory(source: str, target: str) -> None:
    """Copy a live chdb directory: part files as hard links, the rest copied, locks left out."""
    def copy(src: str, dst: str) -> None:
        parent = os.path.basename(os.path.dirname(src))
        try:
            if _PART.match(parent):
                try:
                    os.link(src, dst)
                    return
                except OSError:
                    pass
            shutil.copy2(src, dst)
        except FileNotFoundError:  # removed by a merge while we copied: the merged part covers it
            pass

    def ignore(directory: str, names: list[str]) -> list[str]:
        skip = {LOCK_NAME, "status"} if os.path.realpath(directory) == source else set()
        return [name for name in names if name in skip or name.startswith("tmp_")]

    shutil.copytree(source, target, copy_function=copy, ignore=ignore, symlinks=True,
                    ignore_dangling_symlinks=True, dirs_exist_ok=False)


def main(args: Any, config: ConfigLoader) -> int:
    """`agentdbg query` on the directory (arguments parsed, config loader given, by pipeline/cli.py)."""
    try:
        path = args.path or path_from_config(config(), args.config)
        run_query(args.sql, path, args.format, args.snapshot)
    except QueryError as exc:
        print(f"agentdbg query: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - config errors and the like, one line each
        errors = getattr(exc, "errors", None) or [str(exc)]
        for error in errors:
            print(f"agentdbg query: {error}", file=sys.stderr)
        return 1
    return 0

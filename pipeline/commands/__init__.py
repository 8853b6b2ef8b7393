"""The terminal commands beside `run` and `validate`: `query`, `sessions`, `session`, `triggers`,
`decisions`, `forget`.

They are not components, so the component registry does not list them: pipeline/cli.py parses
their arguments, resolves the config and hands both to `run(name, args, config)`. The config
is passed as a loader that reads the files once, on the first call: a command that is given
an address (`--url`, `--path`) never reads the config, so a broken config file does not stop
it. Nothing here imports a component or the registry; what a command needs from the config
(the chdb exporter's `path`, the explorer's endpoint) it reads from the resolved sections.

- explorer.py: the commands that ask the running daemon's explorer API;
- query.py: `query` on a chdb data directory, when the daemon's API is not the way.
"""
from __future__ import annotations

from typing import Any

from pipeline.commands import explorer, query
from pipeline.commands.explorer import ConfigLoader

NAMES: tuple[str, ...] = ("query", *(name for name in explorer.COMMANDS if name != "query"))


def run(name: str, args: Any, config: ConfigLoader) -> int:
    """Run command `name` with its parsed arguments; the exit status."""
    if name == "query" and not explorer.query_through_api(args, config):
        return query.main(args, config)  # no explorer to ask (or --path / --snapshot): the directory
    if name not in explorer.COMMANDS:
        raise KeyError(f"unknown command {name!r}")
    return explorer.main(name, args, config)

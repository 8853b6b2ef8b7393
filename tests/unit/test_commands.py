"""The terminal commands (pipeline/commands/): the CLI resolves the config and hands it over.

The config reaches a command as a loader that reads the files once, on the first call; a
command given an address (`--url`, `--path`) never reads it, so a broken config file cannot
stop it. The commands run in-process here; tests/integration/test_explorer_cli.py and
test_chdb_exporter.py run them as `agentdbg ...` against a real daemon and a real chdb store.
"""
from __future__ import annotations

import argparse
import functools
import socket
from pathlib import Path

import pytest

from pipeline.commands import NAMES, run
from pipeline.config.resolve import ResolvedConfig
from pipeline.service import load_config

CONFIG = """
receivers:
  otlp:
    protocols: {grpc: {endpoint: "127.0.0.1:0"}}
exporters:
  chdb: {path: "%s"}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [chdb]}
"""


class Loader:
    """The CLI's loader (load_config, cached), counting how often the files were read."""

    def __init__(self, sources: list[str]) -> None:
        self.reads = 0
        self.sources = sources
        self.load = functools.cache(self._read)

    def _read(self) -> ResolvedConfig:
        self.reads += 1
        return load_config(self.sources)

    def __call__(self) -> ResolvedConfig:
        return self.load()


def arguments(config: list[str], **given: object) -> argparse.Namespace:
    defaults = {"url": None, "token": None, "path": None, "snapshot": False, "format": "table", "sql": "SELECT 1",
                "json": False, "limit": 100, "service": "", "agent": "", "since": "", "until": "",
                "min_cost": "", "errors": False, "has_trigger": False}
    return argparse.Namespace(config=config, **{**defaults, **given})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_command_given_an_address_never_reads_the_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    broken = Loader([str(tmp_path / "missing.yaml")])
    url = f"http://127.0.0.1:{closed_port()}"
    assert run("sessions", arguments(broken.sources, url=url), broken) == 1
    assert f"cannot reach the explorer at {url}" in capsys.readouterr().err
    assert run("query", arguments(broken.sources, path=str(tmp_path)), broken) == 1
    assert f"no chdb data in {tmp_path.resolve()}" in capsys.readouterr().err
    assert broken.reads == 0


def test_query_finds_the_chdb_directory_in_the_resolved_config_read_once(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    store = tmp_path / "store"
    (tmp_path / "agentdbg.yaml").write_text(CONFIG % store)
    loader = Loader([str(tmp_path / "agentdbg.yaml")])
    # No explorer in the config: `query` opens the directory itself, and says it has no data yet.
    assert run("query", arguments(loader.sources), loader) == 1
    assert capsys.readouterr().err.strip() == (
        f"agentdbg query: no chdb data in {store.resolve()} (has the daemon written there yet?)")
    assert loader.reads == 1  # asked twice (explorer? then chdb path), read once


def test_a_broken_config_is_the_commands_error_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "missing.yaml"
    assert run("query", arguments([str(missing)]), Loader([str(missing)])) == 1
    assert capsys.readouterr().err.strip() == (
        f"agentdbg query: {missing}: cannot read the config file: No such file or directory")


def test_the_commands_are_the_clis_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    assert set(NAMES) == {"query", "sessions", "session", "triggers", "decisions", "forget"}
    with pytest.raises(KeyError, match="unknown command 'reload'"):
        run("reload", arguments([]), Loader([]))

"""Where `agentdbg` finds its default config when no `--config` is given.

The one source is the checkout's `config/default.yaml` (what `make run` uses). A built wheel
carries a copy as package data, `pipeline/config/default.yaml` (setup.py copies it there at
build time), so an installed `agentdbg run` / `validate` / `query` / `sessions` finds it
outside a checkout too. The packaged copy is looked at first: in a checkout it does not exist,
and an installed package's directory has no `config/` of its own to be confused with.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

CHECKOUT_DEFAULT = Path(__file__).resolve().parents[2] / "config" / "default.yaml"


def default_config() -> str:
    """The packaged default config, else the checkout's (whose path the error names when the
    file is missing, as a given `--config` would)."""
    packaged = files("pipeline.config") / "default.yaml"
    if packaged.is_file():
        return str(packaged)
    return str(CHECKOUT_DEFAULT)

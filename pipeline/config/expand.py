"""Environment-variable expansion in config values, as otelcol does it.

`${env:VAR}` and `${VAR}` are replaced by the variable; `${VAR:-default}` uses the default
only when VAR is unset; `$$` is a literal `$`. A value that is exactly one reference takes
the YAML type of what it expands to (`${PORT}` with PORT=4317 is the integer 4317).
Keys are never expanded.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any, Mapping

import yaml

_REF = re.compile(r"\$\$|\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
log = logging.getLogger("agentdbg.config")


def expand(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """Expand references in every string value of a decoded YAML tree."""
    env = os.environ if env is None else env
    if isinstance(value, dict):
        return {key: expand(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [expand(item, env) for item in value]
    if isinstance(value, str) and "$" in value:
        return _expand_string(value, env)
    return value


def _expand_string(text: str, env: Mapping[str, str]) -> Any:
    whole = _REF.fullmatch(text)
    expanded = _REF.sub(lambda m: _replacement(m, env), text)
    if whole and whole.group(0) != "$$":
        try:
            typed = yaml.safe_load(expanded)
        except yaml.YAMLError:
            return expanded
        if isinstance(typed, (int, float, bool)):
            return typed
    return expanded


def _replacement(match: re.Match[str], env: Mapping[str, str]) -> str:
    if match.group(0) == "$$":
        return "$"
    name, default = match.group(1), match.group(2)
    if name in env:
        return env[name]
    if default is not None:
        return default
    log.warning("environment variable %s is not set; using an empty string", name)
    return ""

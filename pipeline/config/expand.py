"""Environment-variable expansion in config values, as otelcol does it.

`${env:VAR}` and `${VAR}` are replaced by the variable; `${VAR:-default}` uses the default
only when VAR is unset; `$$` is a literal `$`. A value that is exactly one reference takes
the YAML type of what it expands to (`${PORT}` with PORT=4317 is the integer 4317).
Keys are never expanded.

`expand_with_origins` also returns, for every value that held a reference, where it came
from (`Origin`: the text as written, the variables it names, those that were unset), keyed
by the value's config path (`extensions::health_check::endpoint`). Errors about a value then
name the variable that set it, or that was missing, and the one that moves a port.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

import yaml

_REF = re.compile(r"\$\$|\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
log = logging.getLogger("agentdbg.config")


@dataclass(frozen=True)
class Origin:
    """How a config value was written when it held environment references."""

    text: str                   # as written, e.g. ${env:AGENTDBG_HEALTH_ENDPOINT:-localhost:13133}
    variables: tuple[str, ...]  # the variables it names
    unset: tuple[str, ...]      # those not set (their default, or "", was used)

    def describe(self) -> str:
        """` (from ${env:X}, which is not set)` style note for an error about this value."""
        if self.unset:
            names = ", ".join(self.unset)
            verb = "is" if len(self.unset) == 1 else "are"
            return f" (from {self.text}; environment variable {names} {verb} not set)"
        return f" (from {self.text})"


Origins = dict[str, Origin]


def expand(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """Expand references in every string value of a decoded YAML tree."""
    return expand_with_origins(value, env)[0]


def expand_with_origins(value: Any, env: Mapping[str, str] | None = None) -> tuple[Any, Origins]:
    """Expand like `expand`, and say where each expanded value came from, by config path."""
    origins: Origins = {}
    return _walk(value, os.environ if env is None else env, (), origins), origins


def _walk(value: Any, env: Mapping[str, str], path: tuple[str, ...], origins: Origins) -> Any:
    if isinstance(value, dict):
        return {key: _walk(item, env, (*path, str(key)), origins) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, env, (*path, str(i)), origins) for i, item in enumerate(value)]
    if isinstance(value, str) and "$" in value:
        variables = tuple(m.group(1) for m in _REF.finditer(value) if m.group(1))
        if variables:
            unset = tuple(name for name in variables if name not in env)
            origins["::".join(path)] = Origin(value, variables, unset)
        return _expand_string(value, env, "::".join(path))
    return value


def _expand_string(text: str, env: Mapping[str, str], where: str = "") -> Any:
    whole = _REF.fullmatch(text)
    expanded = _REF.sub(lambda m: _replacement(m, env, where), text)
    if whole and whole.group(0) != "$$":
        try:
            typed = yaml.safe_load(expanded)
        except yaml.YAMLError:
            return expanded
        if isinstance(typed, (int, float, bool)):
            return typed
    return expanded


def _replacement(match: re.Match[str], env: Mapping[str, str], where: str) -> str:
    if match.group(0) == "$$":
        return "$"
    name, default = match.group(1), match.group(2)
    if name in env:
        return env[name]
    if default is not None:
        return default
    log.warning("environment variable %s is not set; using an empty string%s", name,
                f" for {where}" if where else "")
    return ""

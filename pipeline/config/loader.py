"""Read one or more YAML files into one raw config tree.

Later files win; mappings merge deeply, lists are replaced (otelcol's rule). A `--config`
value may also be inline YAML: `yaml:processors::batch::timeout: 2s`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.config.expand import Origins, expand_with_origins
from pipeline.errors import ConfigErrors


def load(sources: list[str]) -> dict[str, Any]:
    """Load, merge and env-expand every source; raise ConfigErrors listing all that failed."""
    return load_with_origins(sources)[0]


def load_with_origins(sources: list[str]) -> tuple[dict[str, Any], Origins]:
    """`load`, and where each value with an environment reference came from, by config path."""
    merged: dict[str, Any] = {}
    errors: list[str] = []
    for source in sources:
        try:
            merged = deep_merge(merged, _read(source))
        except ConfigErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise ConfigErrors(errors)
    return expand_with_origins(merged)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = value
    return result


def _read(source: str) -> dict[str, Any]:
    if source.startswith("yaml:"):
        return _inline(source[len("yaml:"):])
    try:
        text = Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigErrors([f"{source}: cannot read the config file: {exc.strerror}"]) from exc
    return _parse(text, source)


def _inline(text: str) -> dict[str, Any]:
    path, sep, value = text.partition(": ")
    if not sep:
        raise ConfigErrors([f"yaml:{text}: inline config must look like 'yaml:a::b::key: value'"])
    tree: Any = _parse(value, f"yaml:{text}", mapping=False)
    for key in reversed(path.split("::")):
        tree = {key: tree}
    return tree


def _parse(text: str, source: str, mapping: bool = True) -> Any:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigErrors([f"{source}: invalid YAML{where}: {problem}"]) from exc
    if not mapping:
        return data
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigErrors([f"{source}: the top level must be a mapping of sections, not {type(data).__name__}"])
    return data

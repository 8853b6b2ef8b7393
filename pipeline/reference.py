"""The config reference, generated from the registered components' pydantic models.

`agentdbg components --markdown` prints it; README.md embeds its output, so the documented
keys and defaults are the ones the code enforces.
"""
from __future__ import annotations

import inspect
from types import UnionType
from typing import Any, Iterator, Literal, Sequence, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from pipeline.component import Factory, Kind
from pipeline.config.units import parse_byte_size, parse_duration


def _type_name(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    validators = {getattr(m, "func", None) for m in metadata}
    if parse_duration in validators:
        return "duration (`200ms`, `5s`, `1m`)"
    if parse_byte_size in validators:
        return "size (`512KiB`, `64MiB`)"
    if get_origin(annotation) is Literal:
        return " / ".join(f"`{arg}`" for arg in get_args(annotation))
    if get_origin(annotation) in (Union, UnionType):
        return " or ".join(_type_name(arg) for arg in get_args(annotation))
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("NoneType", "None")


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "**required**"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(see below)"
    if isinstance(value, dict) and value and all(isinstance(v, BaseModel) for v in value.values()):
        return f"{len(value)} entries: {', '.join(value)}"
    return f"`{value!r}`" if value not in (None, "", [], {}) else f"`{value!r}`"


def rows(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str, str]]:
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        nested = _nested_model(field.annotation)
        default = _default(field)
        if nested is not None and default in ("(see below)", "`None`"):
            yield path, _type_name(nested), default if default == "`None`" else "-"
            yield from rows(nested, path + ".")
        else:
            yield path, _type_name(field.annotation, field.metadata), default


def _summary(factory: Factory) -> str:
    module = inspect.getmodule(factory.create)
    doc = inspect.getdoc(module) or factory.description
    return doc.split("\n\n")[0].replace("\n", " ")


def component_markdown(factory: Factory) -> str:
    signals = ", ".join(sorted(s.value for s in factory.signals)) if factory.kind != Kind.EXTENSION else "-"
    if factory.emits:
        signals += " → " + ", ".join(sorted(s.value for s in factory.emits))
    lines = [f"### `{factory.kind.section}: {factory.type}`", "", f"Signals: {signals}. {_summary(factory)}", "",
             "| key | type | default |", "|---|---|---|"]
    for path, type_name, default in rows(factory.config_model):
        lines.append(f"| `{path}` | {type_name.replace('|', '&#124;')} | {default.replace('|', '&#124;')} |")
    return "\n".join(lines)


def markdown(factories: dict[Kind, dict[str, Factory]]) -> str:
    parts = []
    for kind in (Kind.RECEIVER, Kind.PROCESSOR, Kind.EXPORTER, Kind.CONNECTOR, Kind.EXTENSION):
        for _, factory in sorted(factories.get(kind, {}).items()):
            parts.append(component_markdown(factory))
    return "\n\n".join(parts) + "\n"


START, END = "<!-- reference:start -->", "<!-- reference:end -->"


def embed(readme: str, reference: str) -> str:
    """README text with the reference between its markers replaced."""
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n\n{reference}\n{END}{tail}"


if __name__ == "__main__":
    import sys
    from pathlib import Path

    from pipeline.registry import factories

    target = Path(sys.argv[sys.argv.index("--write") + 1])
    target.write_text(embed(target.read_text(), markdown(factories())))

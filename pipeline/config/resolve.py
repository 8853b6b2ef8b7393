"""Decode a raw config tree into typed component configs and check the service graph.

Every problem is collected, never just the first, each with its path in otelcol's style:
`exporters::file::path: field required`,
`service::pipelines::traces: references processor "x" which is not configured`.
Only root causes are reported: a component whose own config is invalid is not reported again
by the pipelines that name it. An error about a value set from the environment names the
variable (and says when it was not set).
"""
from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError

from pipeline import workers
from pipeline.component import ComponentID, Factory, Kind, Signal
from pipeline.config import endpoints
from pipeline.config.expand import Origins
from pipeline.config.service import PipelineConfig, ServiceConfig
from pipeline.errors import ConfigErrors
from pipeline.telemetry.redact import is_secret_key, redact_text

SECTIONS = {"receivers": Kind.RECEIVER, "processors": Kind.PROCESSOR, "exporters": Kind.EXPORTER,
            "extensions": Kind.EXTENSION, "connectors": Kind.CONNECTOR}
TOP_LEVEL = set(SECTIONS) | {"service"}
M = TypeVar("M", bound=BaseModel)
_PIPELINE_NAME = re.compile(r"^(traces|metrics|logs|events)(?:/(.+))?$")


@dataclass(frozen=True)
class ComponentConfig:
    id: ComponentID
    factory: Factory
    config: BaseModel


@dataclass(frozen=True)
class Pipeline:
    name: str
    signal: Signal
    receivers: tuple[ComponentID, ...]
    processors: tuple[ComponentID, ...]
    exporters: tuple[ComponentID, ...]


@dataclass
class ResolvedConfig:
    components: dict[Kind, dict[ComponentID, ComponentConfig]] = field(default_factory=dict)
    pipelines: list[Pipeline] = field(default_factory=list)
    service: ServiceConfig = ServiceConfig()
    origins: Origins = field(default_factory=dict)  # config path → how an env-expanded value was written
    # Configured ids whose own config was invalid (already reported): references to them are
    # not errors of their own.
    broken: set[tuple[Kind, ComponentID]] = field(default_factory=set)

    def note(self, path: str) -> str:
        """` (from ${env:X})` when the value at `path` came from the environment, else ''."""
        origin = self.origins.get(path)
        return origin.describe() if origin else ""

    def section(self, kind: Kind) -> dict[ComponentID, ComponentConfig]:
        return self.components.setdefault(kind, {})


def resolve(raw: dict[str, Any], factories: dict[Kind, dict[str, Factory]],
            origins: Origins | None = None) -> ResolvedConfig:
    """Return the typed config or raise ConfigErrors with every problem found."""
    errors: list[str] = []
    resolved = ResolvedConfig(origins=origins or {})
    for key in raw:
        if key not in TOP_LEVEL:
            errors.append(f"{key}: unknown top-level section (valid: {', '.join(sorted(TOP_LEVEL))})")
    for section, kind in SECTIONS.items():
        resolved.components[kind] = _decode_section(raw.get(section), section, kind, factories.get(kind, {}),
                                                    resolved, errors)
    resolved.service = _decode_model(ServiceConfig, raw.get("service"), "service", resolved,
                                     errors) or ServiceConfig()
    if "service" not in raw or not (raw.get("service") or {}).get("pipelines"):
        errors.append("service::pipelines: at least one pipeline must be configured")
    _check_extensions(resolved, errors)
    _check_authenticators(resolved, errors)
    resolved.pipelines = _check_pipelines(resolved, errors)
    _check_connectors(resolved, errors)
    _check_addresses(resolved, errors)
    errors.extend(workers.check(resolved))
    if errors:
        raise ConfigErrors(errors)
    return resolved


def _decode_section(raw: Any, section: str, kind: Kind, factories: dict[str, Factory],
                    resolved: ResolvedConfig, errors: list[str]) -> dict[ComponentID, ComponentConfig]:
    decoded: dict[ComponentID, ComponentConfig] = {}
    if raw is None:
        return decoded
    if not isinstance(raw, dict):
        errors.append(f"{section}: must be a mapping of component ids to their configs")
        return decoded
    for key, body in raw.items():
        try:
            cid = ComponentID.parse(key)
        except ValueError as exc:
            errors.append(f"{section}::{key}: {exc}")
            continue
        factory = factories.get(cid.type)
        if factory is None:
            valid = ", ".join(sorted(factories)) or "none"
            errors.append(f"{section}::{key}: unknown type {cid.type!r} (valid {section}: {valid})")
            resolved.broken.add((kind, cid))
            continue
        config = _decode_model(factory.config_model, body, f"{section}::{key}", resolved, errors)
        if config is not None:
            decoded[cid] = ComponentConfig(cid, factory, config)
        else:
            resolved.broken.add((kind, cid))
    return decoded


def _decode_model(model: type[M], body: Any, path: str, resolved: ResolvedConfig,
                  errors: list[str]) -> M | None:
    try:
        return model.model_validate({} if body is None else body)
    except ValidationError as exc:
        errors.extend(format_validation_error(exc, path, model, resolved.origins))
        return None


def format_validation_error(exc: ValidationError, path: str, model: type[BaseModel],
                            origins: Origins | None = None) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = "::".join(str(part) for part in (path, *err["loc"]))
        origin = (origins or {}).get(loc)
        note = origin.describe() if origin else ""
        if err["type"] == "extra_forbidden":
            parent = _model_at(model, err["loc"][:-1])
            valid = f" (valid keys: {', '.join(parent.model_fields)})" if parent else ""
            lines.append(f"{loc}: unknown key{valid}")
        elif err["type"] == "model_type" and err["input"] is not None:
            lines.append(f"{loc}: must be a mapping, got {type(err['input']).__name__}")
        else:
            lines.append(f"{loc}: {err['msg']}{_shown(err, model)}{note}")
    return [redact_text(line) for line in lines]


def _shown(err: Any, model: type[BaseModel]) -> str:
    """What the error echoes of the value: nothing for a secret (named by the key or marked
    `SecretStr` / `json_schema_extra={"secret": True}` in the model), only its type."""
    if err["type"] == "missing" or "input" not in err:
        return ""
    if _is_secret(model, err["loc"]):
        return f" (got a {type(err['input']).__name__}; the value of a secret is not shown)"
    return f" (got {err['input']!r})"


def _is_secret(model: type[BaseModel], loc: tuple[Any, ...]) -> bool:
    if any(is_secret_key(part) for part in loc):
        return True
    for depth in range(len(loc)):
        parent = _model_at(model, loc[:depth])
        field = parent.model_fields.get(loc[depth]) if parent and isinstance(loc[depth], str) else None
        if field is not None and _marked_secret(field):
            return True
    return False


def _marked_secret(field: Any) -> bool:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and extra.get("secret"):
        return True
    return any(candidate in (SecretStr, SecretBytes)
               for candidate in (field.annotation, *typing.get_args(field.annotation)))


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model an error location points into, descending through model fields, dict values
    (a key in `loc`) and list items (an index); None where `loc` leaves the known types."""
    current: Any = model
    for part in loc:
        current = _inner(current, part)
        if current is None:
            return None
    return current if _is_model(current) else None


def _inner(annotation: Any, part: Any) -> Any:
    for candidate in (annotation, *typing.get_args(annotation)):
        if _is_model(candidate) and isinstance(part, str) and part in candidate.model_fields:
            return candidate.model_fields[part].annotation
        container, args = typing.get_origin(candidate), typing.get_args(candidate)
        if container is dict and isinstance(part, str) and len(args) == 2:
            return args[1]
        if container in (list, tuple, set, frozenset) and isinstance(part, int) and args:
            return args[0]
    return None


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _check_extensions(resolved: ResolvedConfig, errors: list[str]) -> None:
    configured = resolved.section(Kind.EXTENSION)
    for name in resolved.service.extensions:
        try:
            cid = ComponentID.parse(name)
        except ValueError as exc:
            errors.append(f"service::extensions: {exc}")
            continue
        if cid not in configured and (Kind.EXTENSION, cid) not in resolved.broken:
            errors.append(f'service::extensions: references extension "{name}" which is not configured')


def _check_authenticators(resolved: ResolvedConfig, errors: list[str]) -> None:
    """Every `auth::authenticator` (receivers, the debug API, the explorer, health, /metrics)
    names an extension the service runs: otherwise every request to it would be refused (503)
    at run time with nothing said at start."""
    running = set(resolved.service.extensions)
    found: list[tuple[str, str]] = []
    for kind, section in resolved.components.items():
        for cid, component in section.items():
            found += _authenticators(component.config, f"{kind.section}::{cid}")
    found += _authenticators(resolved.service, "service")
    for path, name in found:
        if name not in running:
            errors.append(f'{path}: names "{name}", which is not an extension listed in service::extensions '
                          f"(running: {', '.join(sorted(running)) or 'none'})")


def _authenticators(value: Any, path: str) -> list[tuple[str, str]]:
    """(config path, name) of every non-empty `authenticator` field in a config, at any depth."""
    if isinstance(value, BaseModel):
        out: list[tuple[str, str]] = []
        for key in type(value).model_fields:
            inner = getattr(value, key)
            if key == "authenticator" and isinstance(inner, str):
                out += [(f"{path}::{key}", inner)] if inner else []
            else:
                out += _authenticators(inner, f"{path}::{key}")
        return out
    if isinstance(value, dict):
        return [found for key, inner in value.items() for found in _authenticators(inner, f"{path}::{key}")]
    if isinstance(value, (list, tuple)):
        return [found for number, inner in enumerate(value) for found in _authenticators(inner, f"{path}::{number}")]
    return []


def _check_pipelines(resolved: ResolvedConfig, errors: list[str]) -> list[Pipeline]:
    pipelines = []
    for name, body in resolved.service.pipelines.items():
        path = f"service::pipelines::{name}"
        match = _PIPELINE_NAME.match(name)
        if not match:
            errors.append(f"{path}: invalid pipeline id; it must be traces, metrics, logs or events, "
                          "optionally followed by /name")
            continue
        signal = Signal(match.group(1))
        pipeline = _check_pipeline(name, signal, body, resolved, errors)
        if pipeline:
            pipelines.append(pipeline)
    return pipelines


def _check_pipeline(name: str, signal: Signal, body: PipelineConfig, resolved: ResolvedConfig,
                    errors: list[str]) -> Pipeline | None:
    path = f"service::pipelines::{name}"
    before = len(errors)
    ids = {}
    complete = True
    for kind, refs in ((Kind.RECEIVER, body.receivers), (Kind.PROCESSOR, body.processors),
                       (Kind.EXPORTER, body.exporters)):
        ids[kind] = tuple(_check_refs(path, kind, refs, signal, resolved, errors))
        complete = complete and len(ids[kind]) == len(refs)
    if not body.receivers:
        errors.append(f"{path}: must have at least one receiver")
    if not body.exporters:
        errors.append(f"{path}: must have at least one exporter")
    for kind, refs in ((Kind.PROCESSOR, body.processors), (Kind.EXPORTER, body.exporters),
                       (Kind.RECEIVER, body.receivers)):
        seen = set()
        for ref in refs:
            if ref in seen:
                errors.append(f'{path}: references {kind.value} "{ref}" more than once')
            seen.add(ref)
    if len(errors) != before or not complete:
        return None
    return Pipeline(name, signal, ids[Kind.RECEIVER], ids[Kind.PROCESSOR], ids[Kind.EXPORTER])


def _check_refs(path: str, kind: Kind, refs: list[str], signal: Signal, resolved: ResolvedConfig,
                errors: list[str]) -> list[ComponentID]:
    out = []
    for ref in refs:
        try:
            cid = ComponentID.parse(ref)
        except ValueError as exc:
            errors.append(f"{path}: {exc}")
            continue
        component = resolved.section(kind).get(cid)
        connector = resolved.section(Kind.CONNECTOR).get(cid) if kind != Kind.PROCESSOR else None
        if component is None and connector is None:
            if not _is_broken(resolved, kind, cid):  # else its own error was reported already
                errors.append(f'{path}: references {kind.value} "{ref}" which is not configured')
            continue
        if connector is not None:
            # As an exporter a connector consumes its `signals`; as a receiver it emits its `emits`.
            supported_signals = connector.factory.signals if kind == Kind.EXPORTER else connector.factory.emits
            role = f"connector (as {kind.value})"
        else:
            assert component is not None  # one of the two is configured (checked above)
            supported_signals, role = component.factory.signals, kind.value
        if signal not in supported_signals:
            supported = ", ".join(sorted(s.value for s in supported_signals))
            errors.append(f'{path}: {role} "{ref}" does not support {signal.value} (it supports {supported})')
            continue
        out.append(cid)
    return out


def _is_broken(resolved: ResolvedConfig, kind: Kind, cid: ComponentID) -> bool:
    kinds = (kind,) if kind == Kind.PROCESSOR else (kind, Kind.CONNECTOR)
    return any((k, cid) in resolved.broken for k in kinds)


def _named(refs: list[str]) -> set[ComponentID]:
    ids = set()
    for ref in refs:
        try:
            ids.add(ComponentID.parse(ref))
        except ValueError:
            continue  # reported by the pipeline check
    return ids


def _check_connectors(resolved: ResolvedConfig, errors: list[str]) -> None:
    """A connector must be used on both sides, as otelcol requires; ids may not clash.

    Use is read from the pipelines as written, so that a pipeline with an error of its own
    does not also make its connector look unused on one side."""
    connectors = resolved.section(Kind.CONNECTOR)
    bodies = resolved.service.pipelines.values()
    for cid in connectors:
        for kind in (Kind.RECEIVER, Kind.EXPORTER):
            if cid in resolved.section(kind):
                errors.append(f"connectors::{cid}: the id is also configured under {kind.section}; "
                              "give one of them a /name")
        as_exporter = any(cid in _named(body.exporters) for body in bodies)
        as_receiver = any(cid in _named(body.receivers) for body in bodies)
        if as_exporter and not as_receiver:
            errors.append(f'connectors::{cid}: used as exporter in a pipeline but not used as receiver '
                          "in any pipeline")
        if as_receiver and not as_exporter:
            errors.append(f'connectors::{cid}: used as receiver in a pipeline but not used as exporter '
                          "in any pipeline")


def _check_addresses(resolved: ResolvedConfig, errors: list[str]) -> None:
    """No exporter aimed at this daemon's own receivers; no two servers on one address."""
    for target, receiver in endpoints.self_loops(resolved):
        errors.append(f'{target.path} "{target.value}"{resolved.note(target.path)} is this daemon\'s own receiver '
                      f'{receiver.path} ("{receiver.value}"): every span sent there would come back in and '
                      "be sent again; point it at the backend")
    for later, earlier in endpoints.clashes(resolved):
        errors.append(f'{later.path} "{later.value}"{resolved.note(later.path)} is also {earlier.path} '
                      f'("{earlier.value}"): two servers cannot listen on one address')

"""Which config keys are addresses the daemon listens on, and which ones its exporters call.

By otelcol's convention a server's address is its `endpoint` key (a receiver's protocol, an
extension's HTTP server) and a client's is `endpoint`, `<signal>_endpoint` or `endpoints`
(exporters); the daemon's own metrics listen on `service::telemetry::metrics::address`.
Two checks run on them before anything starts (in `validate`, at start-up and on reload):
- an exporter aimed at one of this daemon's own receivers is refused: every span it
  sends would come back in and be sent again, without end;
- two of the daemon's servers on one address are refused: the second could never bind.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from pipeline.component import ComponentID, Kind
from pipeline.netaddr import same_bind, same_listener, split_host_port, target_host_port

if TYPE_CHECKING:
    from pipeline.config.resolve import ResolvedConfig

METRICS_PATH = "service::telemetry::metrics::address"
_CLIENT_KEYS = ("endpoint", "endpoints")


@dataclass(frozen=True)
class ConfiguredAddress:
    path: str   # e.g. receivers::otlp::protocols::grpc::endpoint
    value: str  # as it reads after expansion, e.g. 0.0.0.0:4317


def _leaves(tree: Any, path: str, key: str = "") -> Iterator[tuple[str, str, Any]]:
    """(path, name of the key holding it, value) of every scalar in a dumped config tree;
    a list item's path ends in its index and its key is the list's."""
    if isinstance(tree, dict):
        for name, value in tree.items():
            yield from _leaves(value, f"{path}::{name}", str(name))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from _leaves(value, f"{path}::{index}", key)
    else:
        yield path, key, tree


def _is_client_key(key: str) -> bool:
    return key in _CLIENT_KEYS or key.endswith("_endpoint")


def _addresses(config: "ResolvedConfig", kind: Kind, ids: set[ComponentID],
               client: bool) -> list[ConfiguredAddress]:
    found = []
    for cid, component in config.section(kind).items():
        if cid not in ids:
            continue
        tree = component.config.model_dump(mode="json")
        for path, key, value in _leaves(tree, f"{kind.section}::{cid}"):
            wanted = _is_client_key(key) if client else key == "endpoint"
            if wanted and isinstance(value, str) and value:
                found.append(ConfiguredAddress(path, value))
    return found


def listen_addresses(config: "ResolvedConfig") -> list[ConfiguredAddress]:
    """Every address a server of this daemon binds: receivers and extensions in use, metrics."""
    extensions = set()
    for name in config.service.extensions:
        try:
            extensions.add(ComponentID.parse(name))
        except ValueError:
            continue  # reported by the extension check
    found = receiver_addresses(config)
    found += _addresses(config, Kind.EXTENSION, extensions, client=False)
    metrics = config.service.telemetry.metrics
    if metrics.level != "none":
        found.append(ConfiguredAddress(METRICS_PATH, metrics.address))
    return found


def receiver_addresses(config: "ResolvedConfig") -> list[ConfiguredAddress]:
    receivers = {cid for p in config.pipelines for cid in p.receivers}
    return _addresses(config, Kind.RECEIVER, receivers, client=False)


def exporter_targets(config: "ResolvedConfig") -> list[ConfiguredAddress]:
    exporters = {cid for p in config.pipelines for cid in p.exporters}
    return _addresses(config, Kind.EXPORTER, exporters, client=True)


def _host_port(value: str) -> tuple[str, int] | None:
    try:
        return split_host_port(value)
    except ValueError:
        return None


def self_loops(config: "ResolvedConfig") -> list[tuple[ConfiguredAddress, ConfiguredAddress]]:
    """(exporter target, receiver address) pairs where the exporter would call this daemon."""
    loops = []
    receivers = [(r, _host_port(r.value)) for r in receiver_addresses(config)]
    for target in exporter_targets(config):
        aimed = target_host_port(target.value)
        if aimed is None:
            continue
        for receiver, bound in receivers:
            if bound is not None and same_listener(aimed, bound):
                loops.append((target, receiver))
                break
    return loops


def clashes(config: "ResolvedConfig") -> list[tuple[ConfiguredAddress, ConfiguredAddress]]:
    """Pairs of this daemon's servers configured on one address (the later one could not bind)."""
    seen: list[tuple[ConfiguredAddress, tuple[str, int]]] = []
    found = []
    for address in listen_addresses(config):
        bound = _host_port(address.value)
        if bound is None:
            continue
        earlier = next((a for a, b in seen if same_bind(b, bound)), None)
        if earlier is not None:
            found.append((address, earlier))
        seen.append((address, bound))
    return found


def path_of(config: "ResolvedConfig", endpoint: str) -> str | None:
    """The config key of the server configured with `endpoint`, for a bind error."""
    return next((a.path for a in listen_addresses(config) if a.value == endpoint), None)


def bind_failure(config: "ResolvedConfig", endpoint: str, reason: str) -> str:
    """One line for a server that could not listen: the key, the address, why, how to move it."""
    path = path_of(config, endpoint)
    where = f" ({path})" if path else ""
    origin = config.origins.get(path or "")
    if origin is not None and origin.variables:
        move = f"set {origin.variables[0]} to another host:port (the value is {origin.text})"
    elif path:
        move = f"change {path} to another host:port"
    else:
        move = "free the address or configure another one"
    return f"cannot listen on {endpoint}{where}: {reason}; {move}"

"""Where an env-expanded value came from, and the one-line bind failure built from it (issue 9)."""
from __future__ import annotations

from pipeline.config.endpoints import bind_failure
from pipeline.config.expand import Origin, expand_with_origins
from pipeline.registry import factories
from pipeline.config.resolve import resolve

ENV = {"HEALTH": "127.0.0.1:13999", "EMPTY": ""}


def test_origins_are_keyed_by_config_path_with_unset_variables():
    tree = {"extensions": {"health_check": {"endpoint": "${env:HEALTH}"}},
            "exporters": {"alertmanager": {"endpoints": ["plain", "${env:AM:-http://localhost:9093}"]}},
            "x": {"y": "$${NOT_A_REFERENCE}", "z": "${EMPTY}-${MISSING}"}}
    expanded, origins = expand_with_origins(tree, ENV)
    assert expanded["extensions"]["health_check"]["endpoint"] == "127.0.0.1:13999"
    assert origins == {
        "extensions::health_check::endpoint": Origin("${env:HEALTH}", ("HEALTH",), ()),
        "exporters::alertmanager::endpoints::1": Origin("${env:AM:-http://localhost:9093}", ("AM",), ("AM",)),
        "x::z": Origin("${EMPTY}-${MISSING}", ("EMPTY", "MISSING"), ("MISSING",)),
    }
    assert origins["x::z"].describe() == " (from ${EMPTY}-${MISSING}; environment variable MISSING is not set)"


RAW = {
    "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:14317"}}}},
    "exporters": {"debug": None},
    "extensions": {"health_check": {"endpoint": "${env:HEALTH}"}},
    "service": {"extensions": ["health_check"],
                "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}}},
}


def test_bind_failure_names_key_address_and_variable():
    raw, origins = expand_with_origins(RAW, ENV)
    config = resolve(raw, factories(), origins)
    assert bind_failure(config, "127.0.0.1:13999", "address already in use") == (
        "cannot listen on 127.0.0.1:13999 (extensions::health_check::endpoint): address already in use; "
        "set HEALTH to another host:port (the value is ${env:HEALTH})")
    assert bind_failure(config, "127.0.0.1:14317", "address already in use") == (
        "cannot listen on 127.0.0.1:14317 (receivers::otlp::protocols::grpc::endpoint): address already in use; "
        "change receivers::otlp::protocols::grpc::endpoint to another host:port")

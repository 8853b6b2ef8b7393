"""Unit tests of the config layer: env expansion, units, merging, loading and resolve errors.

`resolve` is exercised with a small factory table of its own, so these tests pin the
resolver's rules and not the set of components the build happens to have.
"""
from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from pipeline.component import ComponentID, Factory, Kind, Signal, StrictConfig
from pipeline.config.expand import expand
from pipeline.config.loader import deep_merge, load
from pipeline.config.resolve import resolve
from pipeline.config.units import ByteSize, Duration, parse_byte_size, parse_duration
from pipeline.errors import ConfigErrors


# -- ${...} expansion ------------------------------------------------------------------------
ENV = {"HOST": "collector", "PORT": "4317", "RATIO": "0.5", "FLAG": "true", "EMPTY": "", "DOLLAR": "$x"}


@pytest.mark.parametrize("raw, expanded", [
    ("${env:HOST}", "collector"),
    ("${HOST}", "collector"),
    ("${env:HOST}:${PORT}", "collector:4317"),
    ("${MISSING:-fallback}", "fallback"),
    ("${env:MISSING:-fallback}", "fallback"),
    ("${HOST:-fallback}", "collector"),
    ("${EMPTY:-fallback}", ""),               # the default applies only when the variable is unset
    ("${MISSING:-}", ""),
    ("${MISSING:-a:b/c}", "a:b/c"),
    ("pa$$word", "pa$word"),
    ("$${HOST}", "${HOST}"),                  # $$ escapes a reference
    ("$$$${HOST}", "$${HOST}"),
    ("cost $5", "cost $5"),                   # a lone $ stays
    ("${DOLLAR}", "$x"),                      # values are not expanded again
    ("plain", "plain"),
])
def test_expand_strings(raw, expanded):
    assert expand(raw, ENV) == expanded


def test_a_whole_reference_takes_the_type_of_its_value():
    assert expand("${PORT}", ENV) == 4317
    assert expand("${RATIO}", ENV) == 0.5
    assert expand("${FLAG}", ENV) is True
    assert expand("${HOST}", ENV) == "collector"
    assert expand("port-${PORT}", ENV) == "port-4317"   # embedded: stays a string
    assert expand("$$", ENV) == "$"


def test_expand_walks_mappings_and_lists_but_not_keys():
    tree = {"${HOST}": {"endpoints": ["${HOST}:${PORT}", 7, None], "n": "${PORT}"}}
    assert expand(tree, ENV) == {"${HOST}": {"endpoints": ["collector:4317", 7, None], "n": 4317}}


def test_unset_variable_without_default_is_empty_and_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="agentdbg.config"):
        assert expand("x${NOPE}y", {}) == "xy"
    assert "NOPE" in caplog.text


def test_expand_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("AGENTDBG_TEST_VAR", "from-env")
    monkeypatch.delenv("AGENTDBG_TEST_UNSET", raising=False)
    assert expand("${env:AGENTDBG_TEST_VAR}/${AGENTDBG_TEST_UNSET:-d}") == "from-env/d"


# -- units -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, seconds", [
    ("200ms", 0.2), ("5s", 5.0), ("1m30s", 90.0), ("1h", 3600.0), ("1.5s", 1.5), ("250us", 250e-6),
    ("10µs", 10e-6), ("100ns", 100e-9), ("2d", 172800.0), ("1h2m3s", 3723.0), ("5", 5.0), ("0", 0.0),
    (" 2s ", 2.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5 parsecs", "", "s", "1x", "1s2", "-1s", "1 s", "ms5", "1,5s"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("text, size", [
    ("512MiB", 512 * 2**20), ("64MB", 64 * 10**6), ("1000000", 10**6), ("1KiB", 1024), ("1kb", 1000),
    ("1.5GiB", int(1.5 * 2**30)), ("3 MiB", 3 * 2**20), ("7b", 7), ("2Ki", 2048), ("1T", 10**12),
])
def test_parse_byte_size(text, size):
    assert parse_byte_size(text) == size


@pytest.mark.parametrize("text", ["lots", "", "-1MiB", "1XiB", "MiB", "1 MiB extra"])
def test_parse_byte_size_rejects(text):
    with pytest.raises(ValueError, match="invalid size"):
        parse_byte_size(text)


class Units(StrictConfig):
    timeout: Duration = 1.0
    size: ByteSize = 0


def test_unit_types_in_a_model():
    assert Units.model_validate({"timeout": "200ms", "size": "2MiB"}) == Units(timeout=0.2, size=2 * 2**20)
    assert Units.model_validate({"timeout": 3, "size": 10}).timeout == 3.0
    for bad in ({"timeout": -1}, {"size": -5}, {"timeout": "soon"}, {"size": "big"}, {"timeout": True},
                {"size": False}):
        with pytest.raises(ValidationError):
            Units.model_validate(bad)


def test_strict_config_forbids_unknown_keys_and_is_frozen():
    with pytest.raises(ValidationError, match="extra"):
        Units.model_validate({"timeot": "1s"})
    with pytest.raises(ValidationError):
        Units().timeout = 2.0  # type: ignore[misc]


# -- component ids ---------------------------------------------------------------------------
def test_component_id_parse():
    assert ComponentID.parse("otlp") == ComponentID("otlp")
    assert ComponentID.parse("file/json") == ComponentID("file", "json")
    assert ComponentID.parse("kafka/a/b") == ComponentID("kafka", "a/b")
    assert str(ComponentID("file", "json")) == "file/json"
    for bad in ("", "1otlp", "ot-lp", "file/", "x" * 64, "/name"):
        with pytest.raises(ValueError):
            ComponentID.parse(bad)


# -- merging and loading ---------------------------------------------------------------------
def test_deep_merge_later_wins_lists_replaced_inputs_untouched():
    base = {"a": {"b": 1, "c": {"d": [1, 2], "e": "x"}}, "keep": True}
    override = {"a": {"c": {"d": [3], "f": None}}, "new": 1}
    merged = deep_merge(base, override)
    assert merged == {"a": {"b": 1, "c": {"d": [3], "e": "x", "f": None}}, "keep": True, "new": 1}
    assert base == {"a": {"b": 1, "c": {"d": [1, 2], "e": "x"}}, "keep": True}
    assert deep_merge({"a": {"b": 1}}, {"a": "scalar"}) == {"a": "scalar"}
    assert deep_merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}


def test_load_merges_files_and_inline_sources_then_expands(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTDBG_TEST_TIMEOUT", "3s")
    first = tmp_path / "a.yaml"
    first.write_text("processors:\n  batch:\n    timeout: 1s\n    send_batch_size: 10\nlist: [1, 2]\n")
    second = tmp_path / "b.yaml"
    second.write_text("processors:\n  batch:\n    timeout: ${env:AGENTDBG_TEST_TIMEOUT}\nlist: [3]\n")
    raw = load([str(first), str(second), "yaml:processors::batch::send_batch_max_size: 20"])
    assert raw == {"processors": {"batch": {"timeout": "3s", "send_batch_size": 10, "send_batch_max_size": 20}},
                   "list": [3]}


def test_load_reports_every_unreadable_source(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("a:\n  b: [\n")
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("- just\n- a list\n")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigErrors) as caught:
        load([str(broken), str(tmp_path / "missing.yaml"), str(scalar), str(empty), "yaml:no-separator"])
    errors = caught.value.errors
    assert len(errors) == 4
    assert errors[0].startswith(f"{broken}: invalid YAML at line")
    assert errors[1].startswith(f"{tmp_path / 'missing.yaml'}: cannot read")
    assert errors[2].startswith(f"{scalar}: the top level must be a mapping")
    assert errors[3].startswith("yaml:no-separator")


# -- resolve ---------------------------------------------------------------------------------
class RecvConfig(StrictConfig):
    endpoint: str = "localhost:1"


class ProcConfig(StrictConfig):
    timeout: Duration = 1.0
    size: int = 0


class ExpConfig(StrictConfig):
    path: str
    nested: ProcConfig = ProcConfig()


class ExtConfig(StrictConfig):
    port: int = 1


def _factories(**signals: frozenset) -> dict[Kind, dict[str, Factory]]:
    traces = frozenset({Signal.TRACES})
    nothing = lambda *args: None  # noqa: E731
    table = {
        Kind.RECEIVER: {"recv": Factory("recv", Kind.RECEIVER, RecvConfig, nothing, signals.get("recv", traces))},
        Kind.PROCESSOR: {"proc": Factory("proc", Kind.PROCESSOR, ProcConfig, nothing, traces)},
        Kind.EXPORTER: {"exp": Factory("exp", Kind.EXPORTER, ExpConfig, nothing,
                                       frozenset({Signal.TRACES, Signal.EVENTS})),
                        "other": Factory("other", Kind.EXPORTER, ExtConfig, nothing, traces)},
        Kind.EXTENSION: {"ext": Factory("ext", Kind.EXTENSION, ExtConfig, nothing)},
    }
    return table


GOOD = {
    "receivers": {"recv": None},
    "processors": {"proc": {"timeout": "50ms"}, "proc/2": None},
    "exporters": {"exp": {"path": "a"}, "exp/b": {"path": "b", "nested": {"size": 3}}},
    "extensions": {"ext": {}},
    "service": {"extensions": ["ext"], "pipelines": {
        "traces": {"receivers": ["recv"], "processors": ["proc", "proc/2"], "exporters": ["exp", "exp/b"]},
        "traces/second": {"receivers": ["recv"], "exporters": ["exp"]},
    }},
}


def test_resolve_good_config():
    resolved = resolve(GOOD, _factories())
    assert [p.name for p in resolved.pipelines] == ["traces", "traces/second"]
    first = resolved.pipelines[0]
    assert first.signal == Signal.TRACES
    assert first.processors == (ComponentID("proc"), ComponentID("proc", "2"))
    assert first.exporters == (ComponentID("exp"), ComponentID("exp", "b"))
    assert resolved.section(Kind.PROCESSOR)[ComponentID("proc")].config.timeout == 0.05
    assert resolved.section(Kind.EXPORTER)[ComponentID("exp", "b")].config.nested.size == 3


def test_resolve_collects_every_error_with_its_path():
    raw = {
        "receiver": {},                                         # misspelt top-level section
        "receivers": {"recv": {"endpoint": 5}},                 # wrong type
        "processors": {"proc": {"timeout": "5 parsecs", "sise": 1}, "1bad": {}},
        "exporters": {"nope": {}, "exp": {}},                   # unknown type; missing required field
        "extensions": {"ext": "not a mapping"},
        "connectors": {"spanmetrics": {}},
        "service": {"extensions": ["ext", "missing_ext"], "pipelines": {
            "traces": {"receivers": ["recv"], "processors": ["x", "proc", "proc"], "exporters": ["exp"]},
            "bogus": {"receivers": ["recv"], "exporters": ["exp"]},
            "traces/empty": {},
        }},
    }
    with pytest.raises(ConfigErrors) as caught:
        resolve(raw, _factories())
    errors = caught.value.errors
    expected_prefixes = [
        "receiver: unknown top-level section",
        "receivers::recv::endpoint: Input should be a valid string",
        "processors::proc::timeout: Value error, invalid duration '5 parsecs'",
        "processors::proc::sise: unknown key (valid keys: timeout, size)",
        "processors::1bad: invalid component id",
        "exporters::nope: unknown type 'nope' (valid exporters: exp, other)",
        "exporters::exp::path: Field required",
        "extensions::ext: must be a mapping",
        "connectors::spanmetrics: unknown type",
        'service::extensions: references extension "missing_ext" which is not configured',
        'service::pipelines::traces: references processor "x" which is not configured',
        'service::pipelines::traces: references processor "proc" more than once',
        "service::pipelines::bogus: invalid pipeline id",
        "service::pipelines::traces/empty: must have at least one receiver",
        "service::pipelines::traces/empty: must have at least one exporter",
    ]
    for prefix in expected_prefixes:
        assert any(e.startswith(prefix) for e in errors), f"missing {prefix!r} in:\n" + "\n".join(errors)
    # Only root causes: "proc", "exp" and "ext" failed to decode and were reported as such; the
    # pipeline and the extension list that name them add no error of their own.
    for cascade in ('references processor "proc" which is not configured',
                    'references exporter "exp" which is not configured',
                    'references extension "ext" which is not configured'):
        assert not any(cascade in e for e in errors), "\n".join(errors)


def test_resolve_requires_a_pipeline():
    with pytest.raises(ConfigErrors) as caught:
        resolve({"receivers": {"recv": None}}, _factories())
    assert caught.value.errors == ["service::pipelines: at least one pipeline must be configured"]


def test_resolve_checks_the_signal_each_component_supports():
    raw = {**GOOD, "exporters": {"exp": {"path": "a"}, "other": {}},
           "service": {"pipelines": {"events": {"receivers": ["recv"], "exporters": ["exp", "other"]}}}}
    with pytest.raises(ConfigErrors) as caught:
        resolve(raw, _factories())
    assert caught.value.errors == [
        'service::pipelines::events: receiver "recv" does not support events (it supports traces)',
        'service::pipelines::events: exporter "other" does not support events (it supports traces)',
    ]
    with pytest.raises(ConfigErrors) as caught:
        resolve(raw, _factories(recv=frozenset({Signal.TRACES, Signal.EVENTS})))
    assert caught.value.errors == [
        'service::pipelines::events: exporter "other" does not support events (it supports traces)']

"""Every pipeline file shipped in config/ validates and builds its graph."""
from pathlib import Path

import pytest
import yaml

from pipeline.component import Kind
from pipeline.graph import Graph
from pipeline.service import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "config").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_builds(path: Path):
    config = load_config([str(path)])
    graph = Graph(config)
    listed = yaml.safe_load(path.read_text())["service"]["pipelines"]
    assert graph.describe()["pipelines"] == {
        name: {"receivers": p["receivers"], "processors": p.get("processors", []), "exporters": p["exporters"]}
        for name, p in listed.items()}


def test_the_embedded_default_needs_no_external_service():
    config = load_config([str(CONFIGS[0].parent / "default.yaml")])
    assert {cid.type for cid in config.section(Kind.RECEIVER)} == {"otlp"}
    assert {cid.type for cid in config.section(Kind.EXPORTER)} <= {"chdb", "debug", "file", "genai_metrics"}

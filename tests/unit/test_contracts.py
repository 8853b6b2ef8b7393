"""Issue 10: the written contracts (pipeline/contracts.py) the graph and the helpers ask for by
name instead of probing attributes: a receiver that cannot feed a pipeline type, a storage
extension a sending queue names, an exporter whose queue is on disk."""
from __future__ import annotations

from pathlib import Path

import pytest

from exporters.file import FileConfig, FileExporter
from extensions.file_storage import FileStorage, FileStorageConfig
from extensions.health_check import HealthCheck, HealthCheckConfig
from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.contracts import QueueOwner, Storage
from pipeline.errors import ConfigErrors
from pipeline.graph import Graph
from pipeline.host import Host
from pipeline.service import load_config


def config_file(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return [str(path)]


def test_a_receiver_that_cannot_feed_a_pipeline_type_makes_the_graph_invalid(tmp_path):
    """The kafka receiver reading JSON documents (events, SignalFilter.accepts) cannot start a traces pipeline."""
    config = load_config(config_file(tmp_path, """
receivers:
  kafka: {brokers: ["127.0.0.1:1"], encoding: json}
exporters:
  debug: {}
service:
  pipelines:
    traces: {receivers: [kafka], exporters: [debug]}
"""))
    with pytest.raises(ConfigErrors, match='receiver "kafka" cannot feed a traces pipeline'):
        Graph(config)


def test_the_graph_finds_the_exporter_whose_queue_is_on_disk(tmp_path):
    config = load_config(config_file(tmp_path, f"""
extensions:
  file_storage: {{directory: "{tmp_path}/queue"}}
exporters:
  file/memory: {{path: "{tmp_path}/a.jsonl"}}
  file/disk: {{path: "{tmp_path}/b.jsonl", sending_queue: {{storage: file_storage}}}}
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:0"}}}}}}
service:
  extensions: [file_storage]
  pipelines:
    traces: {{receivers: [otlp], exporters: [file/memory, file/disk]}}
"""))
    graph = Graph(config)
    owners = {str(cid): exporter for (cid, _), exporter in graph.exporters.items()}
    assert all(isinstance(exporter, QueueOwner) for exporter in owners.values())
    assert (owners["file/memory"].persistent_storage, owners["file/disk"].persistent_storage) == (None, "file_storage")
    assert graph.persistent_storage(config.pipelines[0]) == "file_storage"


async def test_a_sending_queue_naming_an_extension_that_is_no_storage_fails_at_start(tmp_path):
    host = Host()
    health = HealthCheck(Settings.make(Kind.EXTENSION, ComponentID("health_check")), HealthCheckConfig())
    storage = FileStorage(Settings.make(Kind.EXTENSION, ComponentID("file_storage")),
                          FileStorageConfig(directory=str(tmp_path / "queue")))
    host.extensions = {"health_check": health, "file_storage": storage}
    assert isinstance(storage, Storage) and not isinstance(health, Storage)
    exporter = FileExporter(Settings.make(Kind.EXPORTER, ComponentID("file"), Signal.TRACES),
                            FileConfig(path=str(tmp_path / "out.jsonl"), sending_queue={"storage": "health_check"}))
    with pytest.raises(ValueError, match='exporter file: sending_queue.storage "health_check" is not a file_storage'):
        await exporter.start(host)
    await exporter.shutdown()

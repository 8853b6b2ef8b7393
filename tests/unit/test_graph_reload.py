"""The graph's reuse of components on reload (pipeline/graph.py), in process: unchanged receivers
and exporters are the same instances in the new graph, changed ones are new, and data the old
graph still holds reaches the kept exporter without loss. Real file exporters are the ends;
the receiver is built but not started (no sockets: a reload that keeps it only re-points it)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from exporters.file import factory as file_exporter
from pipeline.component import ComponentID, Factory, Kind, Signal
from pipeline.config.resolve import ResolvedConfig, resolve
from pipeline.graph import Graph
from pipeline.host import Host
from processors.batch import factory as batch_processor
from receivers.otlp import factory as otlp_receiver
from testkit.consumers import span_ids, spans
from testkit.otlp_spans import read_json_lines
from testkit.otlp_spans import span_ids as stored_ids

# Only the three types these configs name, not the registry (which imports every component).
FACTORIES: dict[Kind, dict[str, Factory]] = {
    Kind.RECEIVER: {"otlp": otlp_receiver}, Kind.PROCESSOR: {"batch": batch_processor},
    Kind.EXPORTER: {"file": file_exporter}, Kind.CONNECTOR: {}, Kind.EXTENSION: {}}
KEPT, CHANGED = (ComponentID("file", "kept"), Signal.TRACES), (ComponentID("file", "changed"), Signal.TRACES)


def config(kept: Path, changed: Path, batch_timeout: str) -> ResolvedConfig:
    raw: dict[str, Any] = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:4318"}}}},
        "processors": {"batch": {"send_batch_size": 1000, "timeout": batch_timeout}},
        "exporters": {"file/kept": {"path": str(kept)}, "file/changed": {"path": str(changed)}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                              "exporters": ["file/kept", "file/changed"]}}},
    }
    return resolve(raw, FACTORIES)


def hex_ids(*batches: Any) -> list[str]:
    return [i.hex() for batch in batches for i in span_ids(batch)]


async def test_a_reload_keeps_unchanged_components_and_loses_nothing_the_old_graph_held(tmp_path: Path) -> None:
    kept, before, after = tmp_path / "kept.json", tmp_path / "before.json", tmp_path / "after.json"
    host = Host()
    old = Graph(config(kept, before, "1h"))
    await old.start_pipelines(host)
    held = spans(3)
    await old.entries["traces"].consume(held)  # waits in the old batch processor (1 h timeout)

    new = Graph(config(kept, after, "2h"), previous=old)
    assert new.exporters[KEPT] is old.exporters[KEPT] and id(new.exporters[KEPT]) in new.reused
    assert new.receivers[ComponentID("otlp")] is old.receivers[ComponentID("otlp")]
    assert new.exporters[CHANGED] is not old.exporters[CHANGED]  # its path changed
    assert new.processors[0] is not old.processors[0]  # processors are per graph, as in otelcol
    assert id(new.processors[0]) not in new.reused

    await new.start_pipelines(host)
    fresh = spans(2)
    await new.entries["traces"].consume(fresh)
    await old.shutdown(time.monotonic() + 5, keep=new.reused)  # flushes `held` into the old ends
    direct = spans(1)
    await new.exporters[KEPT].consume(direct)  # still running: the old graph did not stop it
    await new.shutdown(time.monotonic() + 5)

    assert stored_ids(read_json_lines(kept)) == hex_ids(held, direct, fresh)
    assert stored_ids(read_json_lines(before)) == hex_ids(held)
    assert stored_ids(read_json_lines(after)) == hex_ids(fresh)


async def test_an_unchanged_config_reuses_every_receiver_and_exporter(tmp_path: Path) -> None:
    paths = tmp_path / "a.json", tmp_path / "b.json"
    old = Graph(config(*paths, "1h"))
    new = Graph(config(*paths, "1h"), previous=old)
    shared = [*old.exporters.values(), *old.receivers.values()]
    assert {id(c) for c in shared} == new.reused
    assert [*new.exporters.values(), *new.receivers.values()] == shared

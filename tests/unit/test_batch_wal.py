"""The batch processor's write-ahead log (issue 9 point 3), in process.

A real `file_storage` extension and the real graph wiring tell the processor whether an
exporter after it persists its queue. The next stage is a small recording consumer that can
be told to refuse, standing for a full exporter queue. A "crash" is a processor abandoned
without shutdown, its log released the way the end of a process releases it.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from extensions.file_storage import FileStorage, FileStorageConfig, read_segment
from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.errors import Refused
from pipeline.graph import Graph
from pipeline.host import Downstream, Host
from pipeline.telemetry import metrics
from pipeline.pdata.traces import Traces, iter_spans
from pipeline.service import load_config
from processors.batch import BatchConfig, BatchProcessor
from testkit.harness import ROOT
from testkit.otlp_load import agent_request


class Next:
    """The exporters: keeps what it takes; refuses while `refusing`."""

    def __init__(self) -> None:
        self.taken: list[str] = []
        self.refusing = False

    async def consume(self, batch: Traces) -> None:
        if self.refusing:
            raise Refused("sending queue is full", retry_after=1.0)
        self.taken.extend(span.span_id.hex() for span in iter_spans(batch.message))


def request(spans: int = 10) -> tuple[Traces, set[str]]:
    message = agent_request(spans)
    return Traces.from_wire(message.SerializeToString()), {s.span_id.hex() for s in iter_spans(message)}


def replayed_items() -> float:
    labels = {"processor": "batch", "otel_signal": "traces"}
    return metrics.REGISTRY.get_sample_value("agentdbg_processor_batch_wal_replayed_items_total", labels) or 0.0


def segments(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.wal"))


async def started(tmp_path: Path, consumer: Next, storage: str | None = "file_storage",
                  send_batch_size: int = 25) -> BatchProcessor:
    host = Host()
    host.extensions = {"file_storage": FileStorage(Settings.make(Kind.EXTENSION, ComponentID("file_storage")),
                                                   FileStorageConfig(directory=str(tmp_path / "queue")))}
    processor = BatchProcessor(Settings.make(Kind.PROCESSOR, ComponentID("batch"), Signal.TRACES),
                               BatchConfig(send_batch_size=send_batch_size, timeout=60), consumer)
    host.set_downstream(processor, Downstream("traces", storage))
    await processor.start(host)
    return processor


def crash(processor: BatchProcessor) -> None:
    """What the end of the process does to an abandoned processor: its files close, its timer stops."""
    assert processor._task is not None
    processor._task.cancel()
    for segment in processor._segments:
        segment.close()
    processor._wal.release()


async def test_an_answered_batch_is_on_disk_and_deleted_once_the_exporters_took_it(tmp_path):
    consumer = Next()
    processor = await started(tmp_path, consumer)
    batch, ids = request(10)
    await processor.consume(batch)  # below send_batch_size: held in memory, and logged
    [segment] = segments(tmp_path / "queue" / "batch-traces")
    assert {s.span_id.hex() for b in read_segment(segment) for s in iter_spans(b.message)} == ids
    more, more_ids = request(20)
    await processor.consume(more)  # reaches send_batch_size: merged and handed on
    assert set(consumer.taken) == ids | more_ids
    assert segments(tmp_path / "queue") == []
    await processor.shutdown()


async def test_without_a_persistent_queue_downstream_nothing_is_written(tmp_path):
    consumer = Next()
    processor = await started(tmp_path, consumer, storage=None)
    await processor.consume(request(10)[0])
    assert not (tmp_path / "queue").exists()
    await processor.shutdown()
    assert len(consumer.taken) == 10


async def test_after_a_crash_the_next_start_sends_the_log_before_new_data(tmp_path):
    consumer = Next()
    first = await started(tmp_path, consumer)
    waiting, waiting_ids = request(10)
    await first.consume(waiting)  # waiting to be merged
    consumer.refusing = True
    refused, refused_ids = request(20)
    await first.consume(refused)  # merged, refused by the exporters: held
    crash(first)
    assert consumer.taken == []

    consumer.refusing = False
    replayed = replayed_items()
    second = await started(tmp_path, consumer)
    assert set(consumer.taken) == waiting_ids | refused_ids  # at start, before anything new
    assert replayed_items() - replayed == 30
    new, new_ids = request(30)
    await second.consume(new)
    assert consumer.taken[-30:] == [s.span_id.hex() for s in iter_spans(new.message)]
    await second.shutdown()
    assert segments(tmp_path / "queue") == []


async def test_held_batches_stay_in_the_log_past_the_shutdown_deadline(tmp_path):
    consumer = Next()
    consumer.refusing = True
    first = await started(tmp_path, consumer)
    batch, ids = request(30)
    await first.consume(batch)
    await first.shutdown(deadline=0)  # already passed
    assert segments(tmp_path / "queue")

    consumer.refusing = False
    second = await started(tmp_path, consumer)
    assert set(consumer.taken) == ids
    await second.shutdown()


async def test_a_torn_last_record_is_ignored_and_the_records_before_it_are_sent(tmp_path):
    consumer = Next()
    first = await started(tmp_path, consumer)
    kept, kept_ids = request(10)
    await first.consume(kept)
    crash(first)
    [segment] = segments(tmp_path / "queue")
    with open(segment, "ab") as handle:  # a record the process was killed in the middle of writing
        handle.write(b"\x00\x10\x00\x00garbage")
    second = await started(tmp_path, consumer)
    assert set(consumer.taken) == kept_ids
    await second.shutdown()


async def test_a_reloaded_processor_does_not_resend_the_live_log_of_the_one_it_replaces(tmp_path):
    consumer = Next()
    old = await started(tmp_path, consumer)
    batch, ids = request(10)
    await old.consume(batch)
    new = await started(tmp_path, consumer)  # the new graph starts while the old one still runs
    assert consumer.taken == []
    other, other_ids = request(10)
    await new.consume(other)
    await old.shutdown()
    await new.shutdown()
    assert sorted(consumer.taken) == sorted(ids | other_ids)
    assert segments(tmp_path / "queue") == []


async def test_a_storage_that_is_not_a_file_storage_extension_is_a_start_error(tmp_path):
    with pytest.raises(ValueError, match='storage downstream "missing" is not a file_storage extension'):
        await started(tmp_path, Next(), storage="missing")


@pytest.mark.parametrize("name", ["default.yaml", "production.yaml"])
def test_the_shipped_span_pipelines_are_durable(name):
    """The graph finds the persistent queue after the batch processor, which it tells the processor."""
    graph = Graph(load_config([str(ROOT / "config" / name)]))
    pipelines = {pipeline.name: pipeline for pipeline in graph.config.pipelines}
    assert "batch" in [str(cid) for cid in pipelines["traces"].processors]
    assert graph.persistent_storage(pipelines["traces"]) == "file_storage"
    assert graph.persistent_storage(pipelines["metrics"]) is None  # only the triggers connector after it

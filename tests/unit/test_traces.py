"""Unit tests of the batches that flow (`Traces`, the `Batch` protocol of every batch type) and of
the receiver's bounded decompression."""
from __future__ import annotations

import gzip
import os
import zlib

import pytest
import zstandard
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.pdata.batch import Batch
from pipeline.pdata.events import Events
from pipeline.pdata.metrics import Metrics
from pipeline.pdata.traces import Traces, chunk_spans, count_spans, iter_spans
from receivers.otlp.decompress import CorruptBody, TooLarge, UnsupportedEncoding, decoder_for


def make_request(layout: list[list[int]], tag: str = "r") -> ExportTraceServiceRequest:
    """`layout[i][j]` spans in scope j of resource i; every resource and scope distinguishable."""
    request = ExportTraceServiceRequest()
    for i, scopes in enumerate(layout):
        rs = request.resource_spans.add(schema_url=f"https://schema/{tag}{i}")
        rs.resource.attributes.add(key="service.name").value.string_value = f"{tag}-service-{i}"
        for j, count in enumerate(scopes):
            ss = rs.scope_spans.add(schema_url=f"https://scope-schema/{j}")
            ss.scope.name, ss.scope.version = f"{tag}-scope-{i}-{j}", f"{j}.0"
            for k in range(count):
                ss.spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name=f"{tag}-{i}-{j}-{k}")
    return request


def placed_spans(request: ExportTraceServiceRequest) -> list[tuple[str, str, str, str, str]]:
    """Each span with the resource and scope it sits under, in order."""
    out = []
    for rs in request.resource_spans:
        service = rs.resource.attributes[0].value.string_value
        for ss in rs.scope_spans:
            for span in ss.spans:
                out.append((span.name, service, rs.schema_url, f"{ss.scope.name}@{ss.scope.version}", ss.schema_url))
    return out


# -- Traces ----------------------------------------------------------------------------------
def test_from_wire_keeps_the_received_bytes_and_counts():
    request = make_request([[2, 3], [1]])
    wire = request.SerializeToString()
    batch = Traces.from_wire(wire, received_at=123.0)
    assert batch.item_count == 6 == count_spans(request)
    assert batch.unchanged and batch.wire() is wire
    assert batch.received_at == 123.0
    assert batch.message == request


def test_from_wire_rejects_garbage():
    from google.protobuf.message import DecodeError

    with pytest.raises(DecodeError):
        Traces.from_wire(b"\x0a\xff\xff\xff\xff\x0f")


def test_a_batch_needs_data():
    with pytest.raises(ValueError):
        Traces()


def test_from_message_serialises_once():
    request = make_request([[2]])
    batch = Traces.from_message(request)
    assert not batch.unchanged
    wire = batch.wire()
    assert ExportTraceServiceRequest.FromString(wire) == request
    assert batch.wire() is wire and batch.unchanged


def test_merge_concatenates_wire_bytes_into_one_valid_request():
    parts = [make_request([[2], [1, 1]], "a"), make_request([[3]], "b"), make_request([[0, 1]], "c")]
    batches = [Traces.from_wire(p.SerializeToString(), received_at=t) for p, t in zip(parts, (5.0, 3.0, 4.0))]
    merged = Traces.merge(batches)
    assert merged.wire() == b"".join(p.SerializeToString() for p in parts)
    assert merged.item_count == 8 == count_spans(merged.message)
    assert merged.received_at == 3.0
    assert placed_spans(merged.message) == sum((placed_spans(p) for p in parts), [])
    assert Traces.merge(batches[:1]) is batches[0]


def test_merge_of_changed_batches_uses_their_new_content():
    first = Traces.from_wire(make_request([[2]], "a").SerializeToString())
    del first.message.resource_spans[0].scope_spans[0].spans[0]
    first.mark_changed()
    second = Traces.from_message(make_request([[1]], "b"))
    merged = Traces.merge([first, second])
    assert merged.item_count == 2
    assert [s.name for s in iter_spans(merged.message)] == ["a-0-0-1", "b-0-0-0"]


@pytest.mark.parametrize("max_spans", [1, 2, 3, 4, 7])
def test_split_keeps_resource_and_scope_with_every_span(max_spans):
    request = make_request([[3, 0, 2], [1], [4, 1]])
    batch = Traces.from_wire(request.SerializeToString(), received_at=42.0)
    pieces = batch.split(max_spans)
    assert all(0 < p.item_count <= max_spans for p in pieces)
    assert all(p.item_count == count_spans(p.message) for p in pieces)
    assert [p.received_at for p in pieces] == [42.0] * len(pieces)
    assert sum((placed_spans(p.message) for p in pieces), []) == placed_spans(request)
    # Full pieces except maybe the last: as few pieces as the cap allows.
    assert len(pieces) == -(-11 // max_spans)
    for piece in pieces:  # the pieces serialise to valid requests on their own
        assert ExportTraceServiceRequest.FromString(piece.wire()) == piece.message


def test_split_without_need_returns_the_batch_itself():
    batch = Traces.from_wire(make_request([[3]]).SerializeToString())
    assert batch.split(0) == [batch]
    assert batch.split(3) == [batch]
    assert batch.split(100) == [batch]
    assert len(batch.split(2)) == 2


def test_chunk_spans_copies_headers_and_leaves_the_source_alone():
    request = make_request([[2, 2]])
    before = request.SerializeToString()
    chunks = list(chunk_spans(request, 3))
    assert [count for _, count in chunks] == [3, 1]
    assert request.SerializeToString() == before
    second = chunks[1][0]
    assert second.resource_spans[0].resource == request.resource_spans[0].resource
    assert second.resource_spans[0].scope_spans[0].scope == request.resource_spans[0].scope_spans[1].scope


def test_clone_shares_bytes_but_not_the_message():
    original = Traces.from_wire(make_request([[2]]).SerializeToString(), received_at=1.0)
    copy = original.clone()
    assert copy.wire() is original.wire()
    assert (copy.item_count, copy.received_at) == (2, 1.0)
    copy.message.resource_spans[0].scope_spans[0].spans[0].name = "changed in one pipeline"
    copy.mark_changed()
    assert original.message.resource_spans[0].scope_spans[0].spans[0].name == "r-0-0-0"
    assert b"changed in one pipeline" in copy.wire()
    assert b"changed in one pipeline" not in original.wire()


def test_mark_changed_drops_cached_bytes_and_columns_and_recounts():
    wire = make_request([[3]]).SerializeToString()
    batch = Traces.from_wire(wire)
    batch._columns = object()  # stands for a built SpanColumns view
    spans = batch.message.resource_spans[0].scope_spans[0].spans
    spans[0].attributes.add(key="redacted").value.bool_value = True
    del spans[2]
    batch.mark_changed()
    assert not batch.unchanged
    assert batch._columns is None
    assert batch.item_count == 2
    new_wire = batch.wire()
    assert new_wire != wire
    reparsed = ExportTraceServiceRequest.FromString(new_wire)
    assert count_spans(reparsed) == 2
    assert reparsed.resource_spans[0].scope_spans[0].spans[0].attributes[0].key == "redacted"


def test_mark_changed_on_a_batch_never_parsed_keeps_its_content():
    batch = Traces(None, make_request([[2]]).SerializeToString(), item_count=2)
    batch.mark_changed()
    assert batch.item_count == 2
    assert count_spans(ExportTraceServiceRequest.FromString(batch.wire())) == 2


# -- the Batch protocol ----------------------------------------------------------------------
def metrics_request(points: list[int]) -> ExportMetricsServiceRequest:
    """One gauge, one sum and one histogram per entry of `points`, each with that many data points."""
    request = ExportMetricsServiceRequest()
    scope = request.resource_metrics.add().scope_metrics.add()
    for i, count in enumerate(points):
        gauge, total, histogram = scope.metrics.add(name=f"g{i}"), scope.metrics.add(name=f"s{i}"), \
            scope.metrics.add(name=f"h{i}")
        for k in range(count):
            gauge.gauge.data_points.add(as_int=k)
            total.sum.data_points.add(as_double=k)
            histogram.histogram.data_points.add(count=k)
    scope.metrics.add(name="no data")  # a metric with no data field counts nothing
    return request


def test_every_batch_type_counts_its_items_and_clones_with_its_receive_time():
    traces = Traces.from_wire(make_request([[2, 3], [1]]).SerializeToString(), received_at=5.0)
    metrics = Metrics.from_wire(metrics_request([2, 1]).SerializeToString(), received_at=6.0)
    events = Events([{"kind": "a"}, {"kind": "b"}], received_at=7.0)
    for batch, items in ((traces, 6), (metrics, 9), (events, 2)):
        assert isinstance(batch, Batch)
        copy = batch.clone()
        assert copy is not batch and type(copy) is type(batch)
        assert (batch.item_count, copy.item_count) == (items, items)
        assert copy.received_at == batch.received_at


def test_a_merged_batch_counts_every_item_and_keeps_the_earliest_receive_time():
    batches = [Metrics.from_wire(metrics_request([n]).SerializeToString(), received_at=t)
               for n, t in ((1, 9.0), (2, 4.0))]
    merged = Metrics.merge(batches)
    assert merged.item_count == 9 == Metrics.from_wire(merged.wire()).item_count
    assert merged.received_at == 4.0


# -- bounded decompression -------------------------------------------------------------------
LIMIT = 64 * 1024
COMPRESS = {
    "identity": lambda data: data,
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}


def decode(encoding: str, body: bytes, limit: int = LIMIT, chunk: int = 4096) -> bytes:
    decoder = decoder_for(encoding, limit)
    for i in range(0, len(body), chunk):
        decoder.feed(body[i:i + chunk])
    return decoder.finish()


@pytest.mark.parametrize("encoding", list(COMPRESS))
@pytest.mark.parametrize("size", [0, 1, LIMIT - 1, LIMIT])
def test_decompress_up_to_the_cap(encoding, size):
    data = os.urandom(size // 2) + b"\x00" * (size - size // 2)
    assert decode(encoding, COMPRESS[encoding](data)) == data


@pytest.mark.parametrize("encoding", list(COMPRESS))
def test_decompress_refuses_one_byte_over_the_cap(encoding):
    with pytest.raises(TooLarge):
        decode(encoding, COMPRESS[encoding](b"\x00" * (LIMIT + 1)))


def test_zstd_bomb_is_refused():
    bomb = COMPRESS["zstd"](b"\x00" * (64 * 1024 * 1024))
    assert len(bomb) < LIMIT
    with pytest.raises(TooLarge):
        decode("zstd", bomb)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_bomb_is_stopped_at_the_cap_not_after_inflating(encoding, monkeypatch):
    bomb = COMPRESS[encoding](b"\x00" * (64 * 1024 * 1024))
    assert len(bomb) < LIMIT
    produced = []
    original = zlib.decompressobj

    class Watched:
        def __init__(self, *args):
            self.inner = original(*args)

        def decompress(self, data, max_length=0):
            out = self.inner.decompress(data, max_length)
            produced.append(len(out))
            return out

        def __getattr__(self, name):
            return getattr(self.inner, name)

    monkeypatch.setattr(zlib, "decompressobj", Watched)
    with pytest.raises(TooLarge):
        decode(encoding, bomb)
    assert produced and sum(produced) <= LIMIT + 1  # zlib never produced more than one byte past the cap


def test_compressed_input_itself_is_capped():
    incompressible = gzip.compress(os.urandom(LIMIT * 2))
    with pytest.raises(TooLarge):
        decode("gzip", incompressible, limit=LIMIT * 4 // 3)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd"])
def test_corrupt_or_truncated_bodies(encoding):
    """A cut-off body is a 400 for the client, never a quietly shorter (or empty) request."""
    body = COMPRESS[encoding](os.urandom(1000))
    with pytest.raises(CorruptBody):
        decode(encoding, body[: len(body) // 2])
    with pytest.raises(CorruptBody):
        decode(encoding, b"definitely not compressed" * 10)


def test_zstd_body_of_several_frames_inflates_them_all():
    first, second = os.urandom(3000), b"\x00" * 5000
    compressor = zstandard.ZstdCompressor()
    body = compressor.compress(first) + compressor.compress(second)
    assert decode("zstd", body) == first + second
    with pytest.raises(CorruptBody):
        decode("zstd", body[:-3])


def test_gzip_body_of_several_members_inflates_them_all():
    """RFC 1952: a gzip file is a series of members; all of them are the body (not just the first)."""
    first, second = os.urandom(3000), os.urandom(5000)
    body = gzip.compress(first) + gzip.compress(second)
    assert gzip.decompress(body) == first + second
    for chunk in (1, 7, 4096, len(body)):
        assert decode("gzip", body, chunk=chunk) == first + second
    with pytest.raises(TooLarge):  # the cap counts every member
        decode("gzip", gzip.compress(b"\x00" * LIMIT) + gzip.compress(b"\x00"))
    with pytest.raises(CorruptBody):
        decode("gzip", gzip.compress(first) + b"trailing garbage")


@pytest.mark.parametrize("encoding", ["", "identity", "GZIP", " gzip ", "x-gzip"])
def test_encoding_names(encoding):
    body = b"payload"
    compressed = body if encoding.strip().lower() in ("", "identity") else gzip.compress(body)
    assert decode(encoding, compressed) == body


def test_unsupported_encoding():
    with pytest.raises(UnsupportedEncoding, match="br"):
        decoder_for("br", LIMIT)

"""Acceptance 2: every refusal of docs/protocols.md (#status-mapping), against one running daemon.

Each test sends one kind of bad request and checks the answer a client sees (status, error
body in the request's encoding, headers), then that the daemon still takes a good request
and writes its span. The decompression-bomb tests also check the daemon's peak memory: a
1 GiB bomb must be stopped at the configured cap, not inflated.
"""
from __future__ import annotations

import gzip
import os
import socket
import select
import struct
import threading
import time
import zlib
from pathlib import Path

import grpc
import psutil
import pytest
import requests
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline import otlp_json
from testkit.harness import BASE_CONFIG, Daemon, file_exporter, pipeline_overlay, wait_until
from testkit.otlp_spans import read_json_lines, span_ids

CAP = 2 * 1024 * 1024  # max_request_body_size of the HTTP receiver, and the gRPC receive limit
# Merged over BASE_CONFIG's otlp receiver, whose endpoints stay: the 2 MiB limits.
LIMITS = """
receivers:
  otlp:
    protocols:
      grpc:
        max_recv_msg_size_mib: 2
      http:
        max_request_body_size: 2MiB
"""
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with Daemon(BASE_CONFIG, workdir=tmp_path_factory.mktemp("refusals"),
                overlay=[pipeline_overlay(file_exporter()), LIMITS]) as running:
        yield running


@pytest.fixture(scope="module")
def channel(daemon):
    with grpc.insecure_channel(f"127.0.0.1:{daemon.ports['grpc']}",
                               options=[("grpc.max_send_message_length", -1)]) as ch:
        yield ch


def url(daemon: Daemon, path: str = "/v1/traces") -> str:
    return f"http://127.0.0.1:{daemon.ports['http']}{path}"


def request_with(spans: list[Span]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "refusals"
    rs.scope_spans.add().spans.extend(spans)
    return request


def good_span(name: str = "good") -> Span:
    now = time.time_ns()
    return Span(trace_id=os.urandom(16), span_id=os.urandom(8), name=name, kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=now, end_time_unix_nano=now + 1000)


def written_span_ids(daemon: Daemon) -> set[str]:
    return set(span_ids(read_json_lines(daemon.dir / "spans.jsonl")))


def assert_still_serves(daemon: Daemon, channel: grpc.Channel) -> None:
    """A good request over HTTP and one over gRPC are answered OK and their spans are written."""
    http_span, grpc_span = good_span("after-http"), good_span("after-grpc")
    response = requests.post(url(daemon), data=request_with([http_span]).SerializeToString(), headers=PROTOBUF,
                             timeout=10)
    assert response.status_code == 200, response.content
    export = channel.unary_unary(EXPORT, request_serializer=ExportTraceServiceRequest.SerializeToString,
                                 response_deserializer=ExportTraceServiceResponse.FromString)
    export(request_with([grpc_span]), timeout=10)
    wanted = {http_span.span_id.hex(), grpc_span.span_id.hex()}
    wait_until(lambda: wanted <= written_span_ids(daemon), timeout=10, message="the good spans in the output")


def rpc_status(content: bytes, content_type: str) -> status_pb2.Status:
    if content_type.startswith("application/json"):
        return otlp_json.decode(content, status_pb2.Status)
    return status_pb2.Status.FromString(content)


# -- HTTP ------------------------------------------------------------------------------------
def test_malformed_protobuf_is_400_with_protobuf_status(daemon, channel):
    response = requests.post(url(daemon), data=b"\x0a\xff\xff\xff\xff\x0f garbage", headers=PROTOBUF, timeout=10)
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/x-protobuf")
    status = status_pb2.Status.FromString(response.content)
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert status.message
    assert "Retry-After" not in response.headers
    assert_still_serves(daemon, channel)


@pytest.mark.parametrize("body", [
    b'{"resourceSpans": [',                                             # not JSON
    b'["resourceSpans"]',                                               # not an object
    b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz-not-hex", "spanId": "0102030405060708"}]}]}]}',
    b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
], ids=["truncated", "array", "bad-hex-id", "bad-int64"])
def test_malformed_json_is_400_with_json_status(daemon, channel, body):
    response = requests.post(url(daemon), data=body, headers=JSON, timeout=10)
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/json")
    document = response.json()
    assert document["code"] == code_pb2.INVALID_ARGUMENT
    assert document["message"]
    assert_still_serves(daemon, channel)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_405_with_allow_post(daemon, channel, method):
    response = requests.request(method, url(daemon), timeout=10)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert_still_serves(daemon, channel)


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", None])
def test_unsupported_content_type_is_415(daemon, channel, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = requests.post(url(daemon), data=request_with([good_span()]).SerializeToString(), headers=headers,
                             timeout=10)
    assert response.status_code == 415
    assert_still_serves(daemon, channel)


def test_unsupported_or_corrupt_content_encoding_is_400(daemon, channel):
    body = request_with([good_span()]).SerializeToString()
    response = requests.post(url(daemon), data=body, headers={**PROTOBUF, "Content-Encoding": "br"}, timeout=10)
    assert response.status_code == 400
    assert status_pb2.Status.FromString(response.content).code == code_pb2.INVALID_ARGUMENT
    corrupt = gzip.compress(body)[:-12] + b"\x00" * 12   # stream cut short, trailer garbage
    response = requests.post(url(daemon), data=corrupt, headers={**PROTOBUF, "Content-Encoding": "gzip"}, timeout=10)
    assert response.status_code == 400
    assert_still_serves(daemon, channel)


def test_body_over_max_request_body_size_is_413(daemon, channel):
    before = daemon.metric("agentdbg_receiver_rejected_requests_total", reason="too_large", transport="http")
    body = b"\x00" * (CAP + 1024)
    response = requests.post(url(daemon), data=body, headers=PROTOBUF, timeout=10)
    assert response.status_code == 413
    assert status_pb2.Status.FromString(response.content).message
    assert "Retry-After" not in response.headers  # too large is permanent, never retried

    def chunks():  # no Content-Length: the cap must hold while streaming
        for _ in range(CAP // 65536 + 2):
            yield b"\x00" * 65536

    response = requests.post(url(daemon), data=chunks(), headers=JSON, timeout=10)
    assert response.status_code == 413
    assert response.json()["message"]
    after = daemon.metric("agentdbg_receiver_rejected_requests_total", reason="too_large", transport="http")
    assert after - before == 2
    assert_still_serves(daemon, channel)


def bad_ids_request() -> tuple[ExportTraceServiceRequest, set[str], set[str]]:
    good = [good_span(f"valid-{i}") for i in range(3)]
    bad = [Span(trace_id=os.urandom(8), span_id=os.urandom(8), name="short-trace-id"),
           Span(trace_id=os.urandom(16), span_id=os.urandom(4), name="short-span-id"),
           Span(trace_id=os.urandom(16), span_id=os.urandom(8), parent_span_id=os.urandom(3), name="bad-parent")]
    request = request_with([bad[0], good[0], bad[1], good[1], bad[2], good[2]])
    return request, {s.span_id.hex() for s in good}, {s.span_id.hex() for s in bad}


def assert_partial_success(daemon: Daemon, channel: grpc.Channel, reply: ExportTraceServiceResponse,
                           good_ids: set[str], bad_ids: set[str], transport: str, failed_before: float) -> None:
    """The three bad spans are rejected and counted under `transport`, the good ones written."""
    assert reply.partial_success.rejected_spans == 3
    assert reply.partial_success.error_message
    wait_until(lambda: good_ids <= written_span_ids(daemon), timeout=10, message="the valid spans written")
    assert not bad_ids & written_span_ids(daemon)
    assert daemon.metric("otelcol_receiver_failed_spans_total", transport=transport) - failed_before == 3
    assert_still_serves(daemon, channel)


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_wrong_length_ids_over_http_are_partial_success(daemon, channel, encoding):
    request, good_ids, bad_ids = bad_ids_request()
    before = daemon.metric("otelcol_receiver_failed_spans_total", transport="http")
    if encoding == "json":
        response = requests.post(url(daemon), data=otlp_json.encode(request), headers=JSON, timeout=10)
        reply = otlp_json.decode(response.content, ExportTraceServiceResponse)
    else:
        response = requests.post(url(daemon), data=request.SerializeToString(), headers=PROTOBUF, timeout=10)
        reply = ExportTraceServiceResponse.FromString(response.content)
    assert response.status_code == 200  # partial acceptance is success: the client must not retry
    assert_partial_success(daemon, channel, reply, good_ids, bad_ids, "http", before)


# -- gRPC ------------------------------------------------------------------------------------
def test_grpc_garbage_bytes_are_invalid_argument(daemon, channel):
    raw = channel.unary_unary(EXPORT)  # no serializer: the bytes go out as they are
    with pytest.raises(grpc.RpcError) as caught:
        raw(b"\x0a\xff\xff\xff\xff\x0f not protobuf", timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = dict(caught.value.trailing_metadata() or ())
    status = status_pb2.Status.FromString(details["grpc-status-details-bin"])
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert not status.details  # no RetryInfo: permanent
    assert_still_serves(daemon, channel)


def test_grpc_oversize_message_is_resource_exhausted(daemon, channel):
    request = request_with([good_span()])
    request.resource_spans[0].resource.attributes.add(key="blob").value.bytes_value = b"\x01" * (CAP + 1024)
    export = channel.unary_unary(EXPORT, request_serializer=ExportTraceServiceRequest.SerializeToString)
    with pytest.raises(grpc.RpcError) as caught:
        export(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Without RetryInfo, RESOURCE_EXHAUSTED is permanent for an OTLP client (spec).
    details = dict(caught.value.trailing_metadata() or ())
    if "grpc-status-details-bin" in details:
        status = status_pb2.Status.FromString(details["grpc-status-details-bin"])
        assert not any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
    assert_still_serves(daemon, channel)


def test_wrong_length_ids_over_grpc_are_partial_success(daemon, channel):
    request, good_ids, bad_ids = bad_ids_request()
    before = daemon.metric("otelcol_receiver_failed_spans_total", transport="grpc")
    export = channel.unary_unary(EXPORT, request_serializer=ExportTraceServiceRequest.SerializeToString,
                                 response_deserializer=ExportTraceServiceResponse.FromString)
    reply = export(request, timeout=10)
    assert_partial_success(daemon, channel, reply, good_ids, bad_ids, "grpc", before)


# -- decompression bombs ---------------------------------------------------------------------
BOMB_SIZE = 1 << 30  # 1 GiB of zeros once inflated
# Peak memory the daemon may gain while refusing a bomb. What it may legitimately hold: the
# compressed body (~1 MiB), the inflated bytes up to the 2 MiB cap, one copy of them when the
# pieces are joined, and read buffers and allocator slack: well under 16 MiB. 64 MiB leaves
# room for allocator noise, yet is 1/16 of the bomb: any inflater that does not stop at the
# cap (or that stops only after 64 MiB) fails.
MAX_GROWTH = 64 * 1024 * 1024


def gzip_bomb(size: int = BOMB_SIZE) -> bytes:
    """A valid gzip stream of `size` zero bytes, ~1 MB, made without ever holding `size` bytes.

    Each 1 MiB block is compressed then fully flushed, which byte-aligns the output and
    resets the compressor, so every block after the first compresses to the same bytes.
    """
    block = b"\0" * (1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    final_block = compressor.flush(zlib.Z_FINISH)[:-8]  # empty last block, without its trailer
    crc = 0
    for _ in range(size // len(block)):
        crc = zlib.crc32(block, crc)
    return first + repeated * (size // len(block) - 1) + final_block + struct.pack("<II", crc, size & 0xFFFFFFFF)


def test_gzip_bomb_helper_is_a_real_bomb():
    bomb = gzip_bomb(64 << 20)
    assert len(bomb) < 100_000
    inflater, total = zlib.decompressobj(16 + zlib.MAX_WBITS), 0
    for i in range(0, len(bomb), 65536):
        total += len(inflater.decompress(bomb[i:i + 65536]))
    assert total + len(inflater.flush()) == 64 << 20 and inflater.eof


class PeakMemory:
    """Peak resident memory of a process across a block, relative to its RSS when it began.

    Resets the kernel's high-water mark (/proc/<pid>/clear_refs, "5") and reads VmHWM after;
    where that reset is not allowed, samples RSS with psutil every 2 ms instead.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.process = psutil.Process(pid)
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        self.before = self.process.memory_info().rss
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.process.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self.hwm_reset:
            status = Path(f"/proc/{self.pid}/status").read_text()
            line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
            self.peak = int(line.split()[1]) * 1024
        else:
            self.peak = max(self.samples + [self.process.memory_info().rss])

    @property
    def growth(self) -> int:
        return self.peak - self.before


def test_http_gzip_bomb_is_413_and_never_inflated(daemon, channel):
    bomb = gzip_bomb()
    assert len(bomb) < CAP  # the compressed body itself is within the cap: only inflating passes it
    with PeakMemory(daemon.proc.pid) as memory:
        response = requests.post(url(daemon), data=bomb, headers={**PROTOBUF, "Content-Encoding": "gzip"},
                                 timeout=30)
    assert response.status_code == 413
    assert "exceeds the limit" in status_pb2.Status.FromString(response.content).message
    assert memory.growth < MAX_GROWTH, f"daemon grew by {memory.growth / 2**20:.1f} MiB refusing a bomb"
    assert_still_serves(daemon, channel)


# A gRPC client library compresses the message itself, so it would need the 1 GiB in memory.
# The bomb is sent instead as a gRPC client on the wire does it: HTTP/2 frames carrying a
# length-prefixed message whose compressed flag is set, with `grpc-encoding: gzip`.
HPACK_STATIC_NAMES = [
    None, ":authority", ":method", ":method", ":path", ":path", ":scheme", ":scheme", ":status", ":status",
    ":status", ":status", ":status", ":status", ":status", "accept-charset", "accept-encoding",
    "accept-language", "accept-ranges", "accept", "access-control-allow-origin", "age", "allow",
    "authorization", "cache-control", "content-disposition", "content-encoding", "content-language",
    "content-length", "content-location", "content-range", "content-type", "cookie", "date", "etag", "expect",
    "expires", "from", "host", "if-match", "if-modified-since", "if-none-match", "if-range",
    "if-unmodified-since", "last-modified", "link", "location", "max-forwards", "proxy-authenticate",
    "proxy-authorization", "range", "referer", "refresh", "retry-after", "server", "set-cookie",
    "strict-transport-security", "transfer-encoding", "user-agent", "vary", "via", "www-authenticate",
]


def _hpack_int(value: int, prefix: int, first: int = 0) -> bytes:
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(out + [value])


def _hpack_read_int(data: bytes, pos: int, prefix: int) -> tuple[int, int]:
    value = data[pos] & ((1 << prefix) - 1)
    pos += 1
    if value < (1 << prefix) - 1:
        return value, pos
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _hpack_read_str(data: bytes, pos: int) -> tuple[str, int]:
    if data[pos] & 0x80:
        raise AssertionError("Huffman-coded header (the client announced no table, grpc sends plain literals)")
    length, pos = _hpack_read_int(data, pos, 7)
    return data[pos:pos + length].decode(), pos + length


def hpack_decode(block: bytes) -> dict[str, str]:
    """Enough HPACK for a grpc-core answer to a client that set HEADER_TABLE_SIZE to 0."""
    headers, pos = {}, 0
    while pos < len(block):
        byte = block[pos]
        if byte & 0x80:                       # indexed field (static table only)
            index, pos = _hpack_read_int(block, pos, 7)
            headers[HPACK_STATIC_NAMES[index]] = "200" if index == 8 else ""
            continue
        if byte & 0xE0 == 0x20:               # dynamic table size update
            _, pos = _hpack_read_int(block, pos, 5)
            continue
        prefix = 6 if byte & 0x40 else 4
        index, pos = _hpack_read_int(block, pos, prefix)
        if index:
            name = HPACK_STATIC_NAMES[index]
        else:
            name, pos = _hpack_read_str(block, pos)
        value, pos = _hpack_read_str(block, pos)
        headers[name] = value
    return headers


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def raw_grpc_call(port: int, message: bytes, compressed: bool, timeout: float = 30) -> dict[str, str]:
    """One unary gRPC call over a hand-driven HTTP/2 connection; returns the trailers (or headers)."""
    DATA, HEADERS, RST, SETTINGS, PING, GOAWAY, WINDOW = 0, 1, 3, 4, 6, 7, 8
    body = bytes([1 if compressed else 0]) + struct.pack(">I", len(message)) + message
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(SETTINGS, 0, 0, struct.pack(">HI", 1, 0)))
    fields = [(":method", "POST"), (":scheme", "http"), (":path", EXPORT), (":authority", f"127.0.0.1:{port}"),
              ("content-type", "application/grpc"), ("te", "trailers")]
    if compressed:
        fields.append(("grpc-encoding", "gzip"))
    block = b"".join(b"\x00" + _hpack_int(len(k), 7) + k.encode() + _hpack_int(len(v), 7) + v.encode()
                     for k, v in fields)
    sock.sendall(_frame(HEADERS, 0x4, 1, block))
    conn_window = stream_window = 65535
    max_frame, sent, buffer, answer = 16384, 0, b"", {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            can_send = sent < len(body) and min(conn_window, stream_window) > 0
            readable, writable, _ = select.select([sock], [sock] if can_send else [], [], 0.5)
            if readable:
                data = sock.recv(65536)
                if not data:
                    break
                buffer += data
                while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
                    length = int.from_bytes(buffer[:3], "big")
                    kind, flags, stream = buffer[3], buffer[4], int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
                    payload, buffer = buffer[9:9 + length], buffer[9 + length:]
                    if kind == SETTINGS and not flags & 1:
                        for i in range(0, len(payload), 6):
                            key, value = struct.unpack(">HI", payload[i:i + 6])
                            if key == 4:
                                stream_window += value - 65535
                            elif key == 5:
                                max_frame = value
                        sock.sendall(_frame(SETTINGS, 1, 0))
                    elif kind == PING and not flags & 1:
                        sock.sendall(_frame(PING, 1, 0, payload))
                    elif kind == WINDOW:
                        increment = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
                        if stream:
                            stream_window += increment
                        else:
                            conn_window += increment
                    elif kind == HEADERS and stream == 1:
                        answer.update(hpack_decode(payload))
                        if flags & 1:  # END_STREAM: these were the trailers
                            return answer
                    elif kind in (RST, GOAWAY):
                        return answer
            if writable and sent < len(body):
                n = min(conn_window, stream_window, max_frame, len(body) - sent)
                sock.sendall(_frame(DATA, 1 if sent + n == len(body) else 0, 1, body[sent:sent + n]))
                sent, conn_window, stream_window = sent + n, conn_window - n, stream_window - n
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sock.close()
    return answer


def test_raw_grpc_client_speaks_grpc(daemon, channel):
    """The hand-driven client is a working gRPC client: a valid request comes back OK and is written."""
    span = good_span("raw-h2")
    message = request_with([span]).SerializeToString()
    assert raw_grpc_call(daemon.ports["grpc"], message, compressed=False).get("grpc-status") == "0"
    assert raw_grpc_call(daemon.ports["grpc"], gzip.compress(message), compressed=True).get("grpc-status") == "0"
    wait_until(lambda: span.span_id.hex() in written_span_ids(daemon), timeout=10, message="the raw-h2 span")


def test_grpc_gzip_bomb_is_resource_exhausted_and_never_inflated(daemon, channel):
    """grpc-core checks max_recv_msg_size while inflating and stops there (RESOURCE_EXHAUSTED)."""
    bomb = gzip_bomb()
    with PeakMemory(daemon.proc.pid) as memory:
        trailers = raw_grpc_call(daemon.ports["grpc"], bomb, compressed=True)
    assert trailers.get("grpc-status") == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]), trailers
    assert memory.growth < MAX_GROWTH, f"daemon grew by {memory.growth / 2**20:.1f} MiB refusing a bomb"
    assert_still_serves(daemon, channel)

"""TEST CODE: a ClickHouse HTTP endpoint served by the ClickHouse engine in chDB.

Not a ClickHouse server and not for production: it answers clickhouse-connect's HTTP
requests well enough for the integration tests
(docs/clickhouse-schema.md#what-clickhouse-connect-sends-over-http) by running them in an
embedded chDB session over its own data directory:
- `POST /` (or `GET /`) with the SQL in the `query` URL parameter or the body; settings
  as URL parameters (protocol hints such as `query_id`, `session_id`,
  `wait_end_of_query`, `client_protocol_version` are ignored); `param_<name>` binds;
- the connect-time probes (`SELECT version(), timezone()`,
  `SELECT name, value, readonly FROM system.settings`) run as they are in chDB;
- `INSERT ... FORMAT Native` with the Native block after the first newline: the block
  goes to a temp file and runs as `INSERT INTO t (cols) SELECT * FROM file('<tmp>', 'Native')`;
- a query ending in `FORMAT X` is answered with chDB's bytes in format X;
- request bodies compressed with lz4 (frame), zstd, gzip or deflate are decompressed;
  responses are compressed (lz4/zstd) when the client sent `enable_http_compression=1`
  and accepts the encoding;
- errors: HTTP 500, body `Code: N. DB::Exception: ... (NAME)`, header
  `X-ClickHouse-Exception-Code: N`;
- `POST /__fault` with JSON `{"code": 252, "name": "TOO_MANY_PARTS", "status": 500,
  "count": 2, "match": "INSERT"}` makes the next `count` matching requests fail that way
  (fault injection for the error-mapping tests); with `"delay": S` instead the request runs
  as usual and only its answer is held back S seconds (fault injection for the retry tests:
  a client whose timeout is shorter gives up on an insert the engine has stored, the one case
  a real server cannot be made to show on demand); `GET /__stats` counts requests.

`ClickHouseHTTP` runs it as a subprocess on a free 127.0.0.1 port with its own data
directory: `start()`, `stop()` (the port then refuses connections), `start()` again on the
same port and directory, `freeze()` / `thaw()` (SIGSTOP / SIGCONT: accepts nothing, answers
nothing); `client()` and `scalar(sql)` read it back with clickhouse-connect. Run by hand: `python -m testkit.clickhouse_http --port 8123 --path /tmp/ch`.
"""
from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

IGNORED_PARAMS = frozenset({
    "query", "query_id", "session_id", "session_timeout", "session_check", "wait_end_of_query",
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "date_time_input_format",
    "cancel_http_readonly_queries_on_client_close", "client_protocol_version", "enable_http_compression",
    "database", "user", "password", "default_format", "compress", "decompress", "buffer_size", "quota_key",
    "http_response_buffer_size", "output_format_native_write_json_as_string",
})
_FORMAT_TAIL = re.compile(r"\s+FORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(.+?)\s+FORMAT\s+([A-Za-z0-9_]+)\s*$", re.IGNORECASE | re.DOTALL)
_CODE = re.compile(r"Code:\s*(\d+)")


# -- the server (runs in the subprocess) ----------------------------------------------------------

@dataclass
class Fault:
    code: int
    name: str
    status: int = 500
    count: int = 1
    match: str = ""
    delay: float = 0.0  # > 0: run the request, then hold its answer back this long (no error)


@dataclass
class Engine:
    """The chDB session; every call runs on one worker thread, one at a time."""

    path: str
    conn: Any = None
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="chdb"))

    def open(self) -> None:
        import chdb

        self.conn = chdb.connect(self.path)

    def run(self, sql: str, fmt: str, settings: dict[str, str], params: dict[str, str]) -> bytes:
        """Run one statement; request settings apply to a handle of its own, closed after."""
        import chdb

        conn = chdb.connect(self.path) if settings else self.conn
        try:
            for key, value in settings.items():
                conn.query(f"SET {key} = '{_escape(value)}'", "TabSeparated")
            result = conn.query(sql, fmt, params=params) if params else conn.query(sql, fmt)
            return result.bytes() or b""
        finally:
            if conn is not self.conn:
                conn.close()

    def insert_native(self, target: str, data: bytes, settings: dict[str, str]) -> None:
        with tempfile.NamedTemporaryFile(suffix=".native") as tmp:
            tmp.write(data)
            tmp.flush()
            self.run(f"INSERT INTO {target} SELECT * FROM file('{_escape(tmp.name)}', 'Native')",
                     "TabSeparated", settings, {})


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.lower().strip()
    if not body or encoding in ("", "identity"):
        return body
    if encoding == "lz4":
        import lz4.frame

        return lz4.frame.decompress(body)
    if encoding == "zstd":  # clickhouse-connect sends one frame per block
        import io

        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body), read_across_frames=True)
        return reader.read()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    raise ValueError(f"unsupported Content-Encoding {encoding}")


def compress(body: bytes, accept: str) -> tuple[bytes, str | None]:
    accepted = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    if "zstd" in accepted:
        import zstandard

        return zstandard.ZstdCompressor().compress(body), "zstd"
    if "lz4" in accepted:
        import lz4.frame

        return lz4.frame.compress(body), "lz4"
    return body, None


def split_request(query_param: str | None, body: bytes) -> tuple[str, bytes | None]:
    """(sql, insert data or None): the SQL is the `query` parameter or the body's first line(s)."""
    if query_param:
        sql = query_param
        return (sql, body) if body else (sql, None)
    text_end = body.find(b"\n")
    head = body if text_end < 0 else body[:text_end]
    if _INSERT.match(head.decode("utf-8", "replace")):
        return head.decode(), body[text_end + 1:] if text_end >= 0 else b""
    return body.decode("utf-8"), None


def make_app(engine: Engine) -> Any:
    from aiohttp import web

    faults: list[Fault] = []
    stats = {"requests": 0, "inserts": 0, "errors": 0}

    def error(code: int, message: str, status: int = 500) -> web.Response:
        stats["errors"] += 1
        return web.Response(status=status, text=message if message.startswith("Code:") else
                            f"Code: {code}. DB::Exception: {message}",
                            headers={"X-ClickHouse-Exception-Code": str(code)})

    def injected(sql: str) -> Fault | None:
        for fault in faults:
            if fault.count > 0 and fault.match.lower() in sql.lower():
                fault.count -= 1
                return fault
        return None

    def fault_error(fault: Fault) -> web.Response:
        return error(fault.code, f"Code: {fault.code}. DB::Exception: injected fault. ({fault.name}) "
                                 f"(version test)", fault.status)

    async def handle(request: web.Request) -> web.StreamResponse:
        stats["requests"] += 1
        body = await request.read()
        if request.method == "GET" and "query" not in request.query:
            return web.Response(text="Ok.\n")
        try:
            body = decompress(body, request.headers.get("Content-Encoding", ""))
            sql, data = split_request(request.query.get("query"), body)
        except Exception as exc:  # noqa: BLE001 - reported to the client
            return error(27, f"cannot read the request: {exc} (CANNOT_PARSE_INPUT_ASSERTION_FAILED)")
        fault = injected(sql)
        if fault is not None and not fault.delay:
            return fault_error(fault)
        settings = {k: v for k, v in request.query.items() if k not in IGNORED_PARAMS and not k.startswith("param_")}
        params = {k[len("param_"):]: v for k, v in request.query.items() if k.startswith("param_")}
        loop = asyncio.get_running_loop()
        try:
            payload, fmt = await loop.run_in_executor(engine.pool, execute, engine, sql, data, settings, params,
                                                      request.query.get("default_format", "TabSeparated"))
        except Exception as exc:  # noqa: BLE001 - reported the way ClickHouse does
            text = str(exc)
            match = _CODE.search(text)
            return error(int(match.group(1)) if match else 1001, text[text.find("Code:"):] if match else text)
        if data is not None:
            stats["inserts"] += 1
        if fault is not None:  # stored, but the client hears nothing until after its timeout
            await asyncio.sleep(fault.delay)
        return respond(request, payload, fmt)

    def respond(request: web.Request, payload: bytes, fmt: str) -> web.Response:
        headers = {"X-ClickHouse-Format": fmt, "X-ClickHouse-Timezone": "UTC",
                   "X-ClickHouse-Summary": json.dumps({"read_rows": "0", "written_rows": "0"})}
        if request.query.get("enable_http_compression") == "1" and payload:
            payload, encoding = compress(payload, request.headers.get("Accept-Encoding", ""))
            if encoding:
                headers["Content-Encoding"] = encoding
        return web.Response(body=payload, headers=headers)

    async def ping(_: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    async def add_fault(request: web.Request) -> web.Response:
        faults.append(Fault(**await request.json()))
        return web.json_response({"faults": len(faults)})

    async def get_stats(_: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application(client_max_size=1 << 30, handler_args={"auto_decompress": False})
    app.router.add_get("/ping", ping)
    app.router.add_post("/__fault", add_fault)
    app.router.add_get("/__stats", get_stats)
    app.router.add_route("*", "/", handle)
    return app


def execute(engine: Engine, sql: str, data: bytes | None, settings: dict[str, str], params: dict[str, str],
            default_format: str) -> tuple[bytes, str]:
    if data is not None:
        match = _INSERT.match(sql)
        if not match or match.group(2).lower() != "native":
            raise RuntimeError("Code: 73. DB::Exception: this test endpoint takes inserts in FORMAT Native only. "
                               "(UNKNOWN_FORMAT)")
        engine.insert_native(match.group(1), data, settings)
        return b"", "Native"
    fmt = default_format
    tail = _FORMAT_TAIL.search(sql)
    if tail:
        fmt, sql = tail.group(1), sql[:tail.start()]
    return engine.run(sql, fmt, settings, params), fmt


def serve(port: int, path: str) -> None:
    from aiohttp import web

    Path(path).mkdir(parents=True, exist_ok=True)
    engine = Engine(path)
    engine.pool.submit(engine.open).result()
    web.run_app(make_app(engine), host="127.0.0.1", port=port, print=None, handle_signals=True)
    engine.pool.submit(engine.conn.close).result()


# -- the controller (runs in the test process) ----------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ClickHouseHTTP:
    """The endpoint as a subprocess: same port and data directory across stop/start."""

    def __init__(self, path: str | Path, port: int | None = None) -> None:
        self.path = Path(path)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = self.path.parent / f"clickhouse-http-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "ClickHouseHTTP":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "testkit.clickhouse_http", "--port", str(self.port), "--path", str(self.path)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ClickHouse HTTP test endpoint did not start:\n{self.log()}")
            time.sleep(0.1)
        return self

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
                return b"Ok." in sock.recv(1024)
        except OSError:
            return False

    def stop(self, timeout: float = 30) -> None:
        """Stop the process: the port refuses connections until `start()`."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.thaw()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def freeze(self) -> None:
        """SIGSTOP: connections hang (no answer) until `thaw()`."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def inject(self, code: int, name: str, count: int = 1, match: str = "", status: int = 500) -> None:
        """Make the next `count` requests whose SQL contains `match` fail with ClickHouse error `code`."""
        import requests

        requests.post(f"{self.url}/__fault", json={"code": code, "name": name, "count": count,
                                                   "match": match, "status": status}, timeout=5).raise_for_status()

    def delay_answers(self, seconds: float, count: int = 1, match: str = "") -> None:
        """Run the next `count` requests whose SQL contains `match` as usual, then answer each only
        after `seconds`: a client that times out sooner retries an insert the engine has stored."""
        import requests

        requests.post(f"{self.url}/__fault", json={"code": 0, "name": "", "count": count, "match": match,
                                                   "delay": seconds}, timeout=5).raise_for_status()

    def stats(self) -> dict[str, int]:
        import requests

        return requests.get(f"{self.url}/__stats", timeout=5).json()

    def client(self) -> Any:
        """A clickhouse-connect client on this endpoint (close it after use)."""
        import clickhouse_connect

        return clickhouse_connect.get_client(host="127.0.0.1", port=self.port, compress=False,
                                             autogenerate_session_id=False)

    def scalar(self, sql: str) -> int:
        """The first value of `sql` as an int; -1 while the endpoint or the table is not there yet."""
        try:
            client = self.client()
        except Exception:  # noqa: BLE001 - endpoint still starting
            return -1
        try:
            return int(client.query(sql).result_rows[0][0])
        except Exception:  # noqa: BLE001 - table not there yet while the daemon starts
            return -1
        finally:
            client.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> "ClickHouseHTTP":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    args = parser.parse_args()
    serve(args.port, os.path.abspath(args.path))


if __name__ == "__main__":
    main()

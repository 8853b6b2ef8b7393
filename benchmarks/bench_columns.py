"""CPU cost of the columnar view and the ClickHouse column path, beside plain parsing, in one run.

Load: the seeded agent fleet (testkit/fleet.py) in batch-processor-sized requests
(8192 spans each, ~4-8 attributes per span). The same wire bytes go through each variant,
rounds interleaved so machine noise hits all of them alike; each variant is timed as a
whole, from the wire bytes:

- parse: `ExportTraceServiceRequest.FromString` (the reference every pipeline pays);
- + SpanColumns.build: the eager per-span columns trigger detectors read;
- + a detector's read: `attributes()` of two GenAI keys, typed, in one pass;
- + ClickHouse columns: `insert_columns` (hex ids, kind/status strings, attribute maps,
  events, links) — what both ClickHouse exporters hand to the serializer;
- + Native serialisation: clickhouse-connect's Native block of those columns (the bytes
  the `clickhouse` exporter sends and the `chdb` exporter streams into the engine).

Second table, "chDB insert paths": the same batches inserted into a fresh chDB directory
(the full otel_traces schema, lookup table and view) three ways; CPU is the whole process
(the engine's threads included), split into Python serialisation and engine time.

Run: `python -m benchmarks.bench_columns [--spans N] [--rounds N] [--no-chdb]`; refreshes its
sections of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from typing import Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from testkit.fleet import Fleet
from benchmarks.results import table, write_section
from exporters.chdb import native_chunks
from pipeline.clickhouse.schema import COLUMN_NAMES, COLUMN_TYPES, insert_columns, quote, schema_statements
from pipeline.pdata.spans import SpanColumns
from pipeline.pdata.traces import chunk_spans, count_spans

BATCH = 8192
DETECTOR_KEYS = ("gen_ai.request.model", "gen_ai.usage.input_tokens")


def payloads(total: int) -> tuple[list[bytes], int]:
    """Wire bytes of `total` fleet spans, cut into BATCH-span requests."""
    fleet = Fleet(seed=3)
    message = ExportTraceServiceRequest()
    while count_spans(message) < total:
        message.MergeFrom(fleet.request(200))
    wires = [part.SerializeToString() for part, _ in chunk_spans(message, BATCH)]
    return wires, count_spans(message)


def parse(wire: bytes) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(wire)


def build(wire: bytes) -> SpanColumns:
    return SpanColumns.build(parse(wire))


def detector(wire: bytes) -> object:
    return build(wire).attributes(DETECTOR_KEYS)


def clickhouse_columns(wire: bytes) -> list:
    return insert_columns(build(wire))


def native(wire: bytes) -> int:
    return sum(len(chunk) for chunk in native_chunks("otel.otel_traces", clickhouse_columns(wire)))


# name → (function, the variant it extends: its "step" is the difference)
VARIANTS: dict[str, tuple[Callable[[bytes], object], str | None]] = {
    "parse (reference)": (parse, None),
    "parse + SpanColumns.build": (build, "parse (reference)"),
    "parse + build + detector read (2 typed attributes)": (detector, "parse + SpanColumns.build"),
    "parse + build + ClickHouse columns": (clickhouse_columns, "parse + SpanColumns.build"),
    "parse + build + ClickHouse columns + Native serialisation": (native, "parse + build + ClickHouse columns"),
}


def cpu_of(func: Callable[[bytes], object], wires: list[bytes]) -> float:
    start = time.process_time()
    for wire in wires:
        func(wire)
    return time.process_time() - start


def column_section(wires: list[bytes], spans: int, rounds: int) -> str:
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name, (func, _) in VARIANTS.items():
            samples[name].append(cpu_of(func, wires))
    median = {name: statistics.median(values) for name, values in samples.items()}
    ref = median["parse (reference)"]
    per_k = lambda cpu: cpu / spans * 1000 * 1000  # noqa: E731 - ms per 1,000 spans
    rows = []
    for name, (_, base) in VARIANTS.items():
        cpu = median[name]
        step = f"{(cpu - median[base]) / ref:+.2f} over “{base}”" if base else "-"
        rows.append([name, f"{per_k(cpu):.2f} ms", f"{cpu / ref:.2f}", step])
    return (f"{spans} spans of the seeded agent fleet in {len(wires)} requests of up to {BATCH} spans. "
            f"In-process CPU time, median of {rounds} interleaved rounds; each variant runs from the wire bytes.\n\n"
            + table(["variant", "CPU per 1,000 spans", "ratio to parse", "step (ratio to parse)"], rows))


# -- chDB insert paths ------------------------------------------------------------------------------

def chdb_section(wires: list[bytes], spans: int, rounds: int) -> str:
    import chdb
    import orjson

    directory = tempfile.mkdtemp(prefix="bench-chdb-")
    conn = chdb.connect(directory)
    try:
        for statement in schema_statements("otel", "otel_traces"):
            conn.query(statement, "TabSeparated")
        columns = [insert_columns(build(wire)) for wire in wires]
        cols = ", ".join(quote(name) for name in COLUMN_NAMES)
        stage = ", ".join(f"{quote(n)} {'Int64' if t == 'DateTime64(9)' else 'Array(Int64)' if t.startswith('Array(DateTime64') else t}"
                          for n, t in zip(COLUMN_NAMES, COLUMN_TYPES))
        select = ", ".join("fromUnixTimestamp64Nano(`Timestamp`)" if n == "Timestamp" else
                           "arrayMap(x -> fromUnixTimestamp64Nano(x), `Events.Timestamp`)" if n == "Events.Timestamp"
                           else quote(n) for n in COLUMN_NAMES)

        def native_bytes(data: list) -> bytes:
            return b"".join(native_chunks("otel.otel_traces", data))

        def json_bytes(data: list) -> bytes:
            return orjson.dumps(dict(zip(COLUMN_NAMES, data)))

        def send_insert(body: bytes) -> None:
            inserter = conn.send_insert(f"INSERT INTO otel.otel_traces ({cols})", "Native")
            inserter.append(body)
            inserter.finish()

        def from_file(fmt: str, sql: Callable[[str], str]) -> Callable[[bytes], None]:
            def run(body: bytes) -> None:
                with tempfile.NamedTemporaryFile(suffix="." + fmt.lower()) as tmp:
                    tmp.write(body)
                    tmp.flush()
                    conn.query(sql(tmp.name), "TabSeparated")
            return run

        paths = {
            "Native, streamed with send_insert (used)": (native_bytes, send_insert),
            "Native, temp file + INSERT ... FROM INFILE": (native_bytes, from_file(
                "Native", lambda f: f"INSERT INTO otel.otel_traces ({cols}) FROM INFILE '{f}' FORMAT Native")),
            "JSONColumns (orjson), temp file + INSERT ... SELECT FROM file()": (json_bytes, from_file(
                "JSON", lambda f: f"INSERT INTO otel.otel_traces ({cols}) SELECT {select} "
                                  f"FROM file('{f}', 'JSONColumns', '{stage}')")),
        }
        serialise: dict[str, list[float]] = {name: [] for name in paths}
        engine: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(rounds):
            for name, (encode, insert) in paths.items():
                start = time.process_time()
                bodies = [encode(data) for data in columns]
                middle = time.process_time()
                for body in bodies:
                    insert(body)
                serialise[name].append(middle - start)
                engine[name].append(time.process_time() - middle)
        rows = []
        per_k = lambda cpu: cpu / spans * 1000 * 1000  # noqa: E731
        ref = statistics.median(serialise["Native, streamed with send_insert (used)"]) + statistics.median(
            engine["Native, streamed with send_insert (used)"])
        for name in paths:
            s, e = statistics.median(serialise[name]), statistics.median(engine[name])
            rows.append([name, f"{per_k(s):.2f} ms", f"{per_k(e):.2f} ms", f"{per_k(s + e):.2f} ms",
                         f"{(s + e) / ref:.2f}"])
    finally:
        conn.close()
        shutil.rmtree(directory, ignore_errors=True)
    return (f"The same {spans} spans ({len(wires)} inserts), columns prepared beforehand; process CPU "
            f"(Python and the engine's threads), median of {rounds} interleaved rounds, into one chDB directory "
            "with the full otel_traces schema (indexes, lookup table, materialized view).\n\n"
            + table(["insert path", "serialise (Python)", "engine", "total per 1,000 spans", "ratio to used"], rows))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-chdb", action="store_true", help="skip the chDB insert-path table")
    args = parser.parse_args()
    wires, spans = payloads(args.spans)
    body = column_section(wires, spans, args.rounds)
    write_section("columnar view and ClickHouse columns", "python -m benchmarks.bench_columns", body)
    print(body)
    if not args.no_chdb:
        body = chdb_section(wires, spans, max(3, args.rounds // 2))
        write_section("chDB insert paths", "python -m benchmarks.bench_columns", body)
        print("\n" + body)


if __name__ == "__main__":
    main()

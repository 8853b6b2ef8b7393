"""The daemon's own CPU per request, in process: bench_revisions' quiet second measure.

Run by bench_revisions once per revision, as `python benchmarks/revision_driver.py ...` with
that revision's checkout first on PYTHONPATH, so it imports only the standard library and
the APIs both revisions share (`Service`, the OTLP receiver's gRPC handler, the metrics
registry). It starts the real service from the given YAML (its sockets too), then calls the
receiver's gRPC `Export` handler directly, `--concurrency` callers at a time, for every
request of the payload file, and waits until every exporter has sent every span. What it
reports is the process CPU (all threads) per 1,000 spans of each round: gRPC's transport,
the network and the load generator are left out, so what remains is the pipeline's own
Python, and on a loaded machine the minimum of a few rounds is a steady figure.

    python benchmarks/revision_driver.py PAYLOADS CONFIG [OVERLAY ...] [--rounds 3 --concurrency 8]
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import struct
import time
from pathlib import Path
from typing import Any, Awaitable, Callable


def read_payloads(path: Path) -> list[bytes]:
    """The requests of a file of 4-byte length-prefixed records (bench_revisions writes it)."""
    blob, out, offset = path.read_bytes(), [], 0
    while offset < len(blob):
        (size,) = struct.unpack_from(">I", blob, offset)
        out.append(blob[offset + 4:offset + 4 + size])
        offset += 4 + size
    return out


def sent_spans(exporters: list[str]) -> float:
    """The smallest `otelcol_exporter_sent_spans` over `exporters` (each must send them all), read
    from the counters themselves: a whole-registry scrape per poll would be measured too."""
    from pipeline.telemetry.metrics import exporter_sent_spans

    return min(exporter_sent_spans.labels(name)._value.get() for name in exporters)


async def callgrind(*command: str) -> None:
    """Under `valgrind --tool=callgrind --instr-atstart=no`: `--instr=on` counts from here on
    (start-up left out), `--dump` writes what was counted since the last dump (one file each)."""
    control = await asyncio.create_subprocess_exec("callgrind_control", *command, str(os.getpid()),
                                                   stdout=asyncio.subprocess.DEVNULL)
    await control.wait()
    await asyncio.sleep(0.2)  # valgrind takes the command at its next poll


async def caller(export: Callable[[bytes, None], Awaitable[bytes]], queue: list[bytes]) -> None:
    """One client: sends the next request once the last one was answered, as the load generator's do."""
    while queue:
        await export(queue.pop(), None)


async def drive(sources: list[str], payloads: list[bytes], spans: int, rounds: int, concurrency: int,
                count: bool = False) -> list[float]:
    from pipeline.component import ComponentID, Signal
    from pipeline.service import Service, load_config
    from receivers.otlp.signals import SPECS

    service = Service(sources, load_config(sources))
    running = asyncio.create_task(service.run())
    while not getattr(service.host, "ready", False):
        if running.done():
            raise SystemExit(f"the service did not start: {running.result()}")
        await asyncio.sleep(0.05)
    assert service.graph is not None
    receiver: Any = service.graph.receivers[ComponentID.parse("otlp")]
    grpc_transport = next(t for t in receiver.transports if hasattr(t, "_handler"))
    export = grpc_transport._handler(SPECS[Signal.TRACES])
    exporters = sorted({str(cid) for cid, _ in service.graph.exporters})
    figures = []
    if count:
        await callgrind("--instr=on")
    for number in range(1, rounds + 1):
        queue = list(reversed(payloads))
        started = time.process_time()
        await asyncio.gather(*(caller(export, queue) for _ in range(concurrency)))
        while sent_spans(exporters) < spans * number:
            await asyncio.sleep(0.01)
        figures.append((time.process_time() - started) / spans * 1000)
        if count:
            await callgrind("--dump")
    if count:
        await callgrind("--instr=off")
    service._stop.set()
    await running
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("payloads", type=Path, help="length-prefixed requests; PAYLOADS.spans holds their spans")
    parser.add_argument("config", nargs="+", help="the YAML files, merged in order")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--callgrind", action="store_true",
                        help="run under callgrind: count instructions round by round")
    args = parser.parse_args()
    payloads = read_payloads(args.payloads)
    spans = int(args.payloads.with_suffix(".spans").read_text())
    gc.collect()
    import uvloop  # as the daemon runs (pipeline/cli.py)

    figures = uvloop.run(drive(args.config, payloads, spans, args.rounds, args.concurrency, args.callgrind))
    print(json.dumps({"cpu_per_1k": figures}))


if __name__ == "__main__":
    main()

"""Live deadlock on config/default.yaml: how soon a blocked agent is seen, and what the
heartbeat stream costs.

All real processes: the daemon as shipped (its endpoints and data directory moved to free
ports), and agents on the OpenTelemetry SDK with partial-span-processor 0.0.9
(tests/clients/partial_agent.py in the `partial` client venv, `make clients`).

1. Block → deadlock: each agent's LLM call ends, then its tool call blocks for 15 s (the
   product's limit is 10 s). `--agents` agents run at once, each its own service, for
   `--rounds` rounds, under two heartbeat set-ups: partial-span-processor with a 1 s
   heartbeat (first one at once, checked every 100 ms), and the project's agent-side library
   (sutazai_agent.configure, live_spans: the processor's own timing, a first heartbeat 5 s
   after a span starts, checked every 5 s). Measured per agent, on one host's wall clock:
   block start (the client's mark) → the `deadlock` firing event's `emitted_at`, and block
   end → its `resolved` event. Target: firing within 11 s.
2. Heartbeat overhead: the daemon's CPU over equal loads of spans (`--rate` spans/s of the
   benchmark fleet over OTLP/gRPC), alternately without and with the heartbeats of
   `--open-spans` open spans every second, sent by the benchmark itself as partial-span-processor
   shapes them (one client process of the library cannot send that many: it posts each record
   in a request of its own, and the rate one real client reaches is measured beside), one
   record per request and 100 per request. Ratios are CPU with / CPU without, in one run; the
   heartbeat records the daemon counted per second are given beside them.

    .venv/bin/python -m benchmarks.bench_live_deadlock [--agents 8] [--rounds 2] [--window 20]
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import psutil

from benchmarks.results import table, write_section
from benchmarks.runner import payloads
from testkit.harness import ROOT, Daemon, default_config_env, wait_until
from testkit.loadgen import post_grpc
from testkit.trigger_helpers import heartbeat_record, logs, new_span_id, read_events, span

SECTION = "live deadlock: block → event, and the heartbeat stream's cost (config/default.yaml)"
COST_SECTION = "live deadlock: the heartbeat stream's cost (config/default.yaml)"
CLIENTS = ROOT / "tests" / "clients"
DEFAULT_CONFIG = ROOT / "config" / "default.yaml"
PYTHON = ROOT / ".cache" / "clients" / "partial" / "bin" / "python"
BLOCK_S, LIMIT_S = 15.0, 10.0
SETUPS = {"partial-span-processor, 1 s heartbeat": ("blocked",),
          "agentlib live_spans (processor defaults: 5 s)": ("agentlib", "blocked")}
FAST = {"HEARTBEAT_MS": "1000", "INITIAL_DELAY_MS": "0", "PROCESS_MS": "100"}
HEARTBEATS = "agentdbg_trigger_inflight_records_total"


def seconds(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def client(daemon: Daemon, service: str, *args: str, **env: str) -> subprocess.Popen:
    run_env = {**os.environ, "OTLP_ENDPOINT": f"http://127.0.0.1:{daemon.ports['http']}", "SERVICE_NAME": service,
               "PYTHONPATH": str(CLIENTS), **env}
    return subprocess.Popen([str(PYTHON), str(CLIENTS / "partial_agent.py"), *args], env=run_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def marks(proc: subprocess.Popen) -> dict[str, float]:
    out, err = proc.communicate(timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"client failed: {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# -- 1. block → event ------------------------------------------------------------------------------
def latencies(daemon: Daemon, setup: str, agents: int, rounds: int) -> tuple[list[float], list[float], int, int]:
    """(block start → first firing, block end → its resolved, agents that never fired, further
    episodes of the same agents), over every run."""
    fired, resolved, missed, extra = [], [], 0, 0
    events_path = Path(daemon.env["AGENTDBG_DATA_DIR"]) / "triggers.jsonl"
    for round_ in range(rounds):
        services = [f"live-{len(fired) + missed}-{round_}-{n}-{abs(hash(setup)) % 1000}" for n in range(agents)]
        env = {**(FAST if "1 s" in setup else {}), "BLOCK_S": str(BLOCK_S)}
        procs = {service: client(daemon, service, *SETUPS[setup], **env) for service in services}
        done = {service: marks(proc) for service, proc in procs.items()}
        time.sleep(2.0)  # the last stop and spans reach the daemon
        wait_until(functools.partial(settled, events_path, services), timeout=60, message="all resolved")
        events = [e for e in read_events(events_path) if e["kind"] == "deadlock"]
        for service in services:
            mine = [e for e in events if e["subject"].get("service") == service]
            first = next((e for e in mine if e["status"] == "firing"), None)
            if first is None:
                missed += 1
                continue
            closed = next(e for e in mine if e["status"] == "resolved" and e["episode"] == first["episode"])
            fired.append(seconds(first["emitted_at"]) - done[service]["block_start"])
            resolved.append(seconds(closed["emitted_at"]) - done[service]["block_end"])
            extra += sum(1 for e in mine if e["status"] == "firing") - 1
    return fired, resolved, missed, extra


def settled(events_path: Path, services: list[str]) -> bool:
    """Every service that fired has resolved."""
    statuses = {(e["subject"].get("service"), e["status"]) for e in read_events(events_path) if e["kind"] == "deadlock"}
    return all((s, "resolved") in statuses or (s, "firing") not in statuses for s in services)


# -- 2. heartbeat overhead ---------------------------------------------------------------------------
def heartbeat_requests(open_spans: int, per_request: int) -> list[bytes]:
    """OTLP/HTTP log requests carrying one heartbeat of each of `open_spans` open tool spans (no
    agent among them: the table's cost, not a judgement's), `per_request` records each."""
    now = time.time()
    records = []
    for n in range(open_spans):
        tool = span(f"execute_tool search-{n % 20}", trace=10_000 + n, span_id=new_span_id(), start=now,
                    attrs={"gen_ai.operation.name": "execute_tool"})
        tool.end_time_unix_nano = 0
        records.append(heartbeat_record(tool, "heartbeat", f"hold-{n % 10}", now))
    return [logs(*records[i:i + per_request], at=now).message.SerializeToString()
            for i in range(0, len(records), per_request)]


async def heartbeat_stream(url: str, bodies: list[bytes], stop: asyncio.Event) -> None:
    """Send every body once a second (as the heartbeats of that many open spans) until `stop`."""
    loop = asyncio.get_running_loop()
    limit = asyncio.Semaphore(32)
    async with aiohttp.ClientSession(headers={"Content-Type": "application/x-protobuf"}) as session:
        async def post(body: bytes) -> None:
            try:
                async with limit, session.post(url, data=body) as answer:
                    await answer.read()
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass  # the daemon's own count of heartbeats is what is reported

        while not stop.is_set():
            started = loop.time()
            await asyncio.gather(*(post(body) for body in bodies))
            await asyncio.sleep(max(0.0, 1.0 - (loop.time() - started)))


async def offered(daemon: Daemon, load: list[bytes], per_request: float, rate: float,
                  beats: list[bytes] | None) -> None:
    stop = asyncio.Event()
    url = f"http://127.0.0.1:{daemon.ports['http']}/v1/logs"
    stream = asyncio.create_task(heartbeat_stream(url, beats, stop)) if beats else None
    await post_grpc(f"127.0.0.1:{daemon.ports['grpc']}", load, 4, rate, per_request)
    stop.set()
    if stream is not None:
        await stream


def window_cpu(daemon: Daemon, load: list[bytes], per_request: float, rate: float,
               beats: list[bytes] | None) -> tuple[float, float]:
    """The daemon's CPU seconds while the load is offered (and the heartbeats/s it counted)."""
    process = psutil.Process(daemon.proc.pid)  # type: ignore[union-attr]
    counted, started, before = daemon.metric(HEARTBEATS, event="heartbeat"), time.monotonic(), process.cpu_times()
    try:
        asyncio.run(offered(daemon, load, per_request, rate, beats))
    except grpc.aio.AioRpcError as error:  # the daemon did not answer a span export in 30 s
        print(f"span load failed in this window: {error.code()}", flush=True)
        return float("nan"), 0.0
    after, wall = process.cpu_times(), time.monotonic() - started
    beat_rate = (daemon.metric(HEARTBEATS, event="heartbeat") - counted) / wall
    return (after.user + after.system) - (before.user + before.system), beat_rate


def one_client_rate(daemon: Daemon, open_spans: int) -> float:
    """Heartbeats/s the daemon counts from one real partial-span-processor client holding
    `open_spans` spans open with a 1 s heartbeat: it exports each record in its own request."""
    proc = client(daemon, "hold-real", "hold", OPEN_SPANS=str(open_spans), RUN_S="15", **FAST)
    time.sleep(5.0)
    counted, started = daemon.metric(HEARTBEATS, event="heartbeat"), time.monotonic()
    time.sleep(8.0)
    rate = (daemon.metric(HEARTBEATS, event="heartbeat") - counted) / (time.monotonic() - started)
    proc.kill()  # measured; its 250 stops, one request each, would only add a wait
    proc.wait()
    return rate


def overhead(daemon: Daemon, open_spans: int, rate: float, window: float, rounds: int) -> dict[str, Any]:
    data, total = payloads(20_000, 100, seed=17)
    per_request = total / len(data)
    count = max(1, round(rate * window / per_request))
    load = (data * (count // len(data) + 1))[:count]
    shapes = {"off": None, "1 record per request": heartbeat_requests(open_spans, 1),
              "100 records per request": heartbeat_requests(open_spans, 100)}
    window_cpu(daemon, load[: len(load) // 4], per_request, rate, None)  # warm-up: chDB's first inserts
    cpu: dict[str, list[float]] = {name: [] for name in shapes}
    beats: dict[str, list[float]] = {name: [] for name in shapes}
    for _ in range(rounds):
        for name, bodies in shapes.items():
            used, beat_rate = window_cpu(daemon, load, per_request, rate, bodies)
            cpu[name].append(used)
            beats[name].append(beat_rate)
    base = statistics.mean(cpu["off"])
    return {"rows": [[name, f"{statistics.mean(beats[name]):,.0f}", f"{statistics.mean(cpu[name]):.2f} s",
                      f"{statistics.mean(cpu[name]) / base:.2f}x",
                      " / ".join(f"{c / b:.2f}x" for c, b in zip(cpu[name], cpu["off"]))]
                     for name in shapes],
            "one_client": one_client_rate(daemon, 250), "rate": rate, "window": window, "open": open_spans}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--open-spans", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=2000.0, help="offered spans/s in the overhead windows")
    parser.add_argument("--window", type=float, default=20.0, help="seconds per overhead window")
    parser.add_argument("--overhead-rounds", type=int, default=2, help="rounds of off / 1 / 100 per request")
    parser.add_argument("--overhead-only", action="store_true",
                        help="only part 2 (the heartbeat stream's cost); part 1's section is left as it is")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="another pipeline file to measure (e.g. an older default.yaml); printed, not written")
    args = parser.parse_args()
    if not PYTHON.exists():
        raise SystemExit("the partial client venv is missing: `make clients` builds it")
    workdir = Path(tempfile.mkdtemp(prefix="bench-live-"))
    daemon = Daemon(args.config.read_text(), workdir=workdir)
    daemon.env = {**default_config_env(daemon, workdir / "data"), "AGENTDBG_EXPLORER_TOKEN": ""}
    daemon.start(wait=False)
    try:
        wait_until(daemon.healthy, timeout=180, interval=0.2, message="daemon health")
        rows = [] if args.overhead_only else [latency_row(daemon, setup, args) for setup in SETUPS]
        cost = overhead(daemon, args.open_spans, args.rate, args.window, args.overhead_rounds)
        print(cost, flush=True)
    finally:
        daemon.stop()
        daemon.kill()
    if args.config != DEFAULT_CONFIG:
        return
    command = "python -m benchmarks.bench_live_deadlock " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("overhead_only", "config"))
    if rows:
        write_latency(command, args, rows)
    write_cost(command + (" --overhead-only" if args.overhead_only else ""), args, cost)


def latency_row(daemon: Daemon, setup: str, args: argparse.Namespace) -> list[object]:
    fired, resolved, missed, extra = latencies(daemon, setup, args.agents, args.rounds)
    within = sum(1 for f in fired if f <= LIMIT_S + 1)
    row: list[object] = [setup, len(fired) + missed, f"{percentile(fired, 0.5):.2f} s",
                         f"{percentile(fired, 0.99):.2f} s", f"{within}/{len(fired) + missed}",
                         f"{percentile(resolved, 0.5):.2f} s", f"{percentile(resolved, 0.99):.2f} s", extra]
    print(setup, row, flush=True)
    return row


def write_latency(command: str, args: argparse.Namespace, rows: list[list[object]]) -> None:
    write_section(SECTION, command, "\n\n".join([
        f"Each agent's tool call blocks for {BLOCK_S:g} s after its LLM call ended; the limit is the "
        f"product's {LIMIT_S:g} s; {args.agents} agents at once (one service each), {args.rounds} rounds, "
        "load average of the shared machine left as it was.",
        table(["heartbeats", "agents", "block → firing p50", "p99", "within 11 s", "return → resolved p50",
               "p99", "further episodes"], rows),
        "A further episode is a second firing of the same agent after its block was resolved: under "
        "back-pressure (the daemon refusing retryably) partial-span-processor's synchronous export of a "
        "span's stop holds the agent's own thread in the exporter's retries, so the agent really does not "
        "progress for a while.",
        f"The heartbeat stream's cost: the section \"{COST_SECTION}\".",
    ]))


def write_cost(command: str, args: argparse.Namespace, cost: dict[str, Any]) -> None:
    write_section(COST_SECTION, command, "\n\n".join([
        f"The heartbeats of {cost['open']:,} open spans every 1 s (records shaped as "
        "partial-span-processor's, sent by the benchmark over OTLP/HTTP, 32 requests at a time), beside "
        f"{cost['rate']:,.0f} spans/s of offered OTLP/gRPC load, in windows of {cost['window']:g} s "
        f"alternated off / one record per request / 100 per request, {args.overhead_rounds} round(s). Daemon "
        "CPU per window and its ratio to the windows without heartbeats (mean, then each round; nan: the "
        "daemon answered a span export of that window in no less than 30 s, so the window was abandoned). "
        "On config/default.yaml the records go to the triggers connector through their own logs pipeline "
        "(memory_limiter and batch only); the storage pipeline drops them before redaction and otel_logs.",
        table(["heartbeats", "records/s counted", "daemon CPU per window", "ratio to off", "each round"],
              cost["rows"]),
        f"One real partial-span-processor client holding 250 spans open (1 s heartbeat) delivers "
        f"{cost['one_client']:,.1f} heartbeats/s to this pipeline: the processor exports each record in a "
        "request of its own, from one thread, and waits for each answer.",
    ]))


if __name__ == "__main__":
    main()

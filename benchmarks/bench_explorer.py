"""Explorer: the sessions list and a 2,000-span session view over a store of 1 M spans, served
while the daemon ingests; and what the UI's polling costs ingest.

Against `config/default.yaml` as shipped (endpoints and data directory moved to free ports and a
temporary directory, as in bench_soak):

1. load: the daemon starts once (its chdb exporter creates the schema) and stops; this process
   then opens the store and inserts `--spans` (1 M) spans directly with `INSERT ... SELECT FROM
   numbers()`: agent sessions of 20 traces × 10 spans (an `invoke_agent` root, `chat` spans with
   tokens and cost, `execute_tool` spans, 2 % errors) spread over the last hour, over 8 services,
   plus one session of 2,000 spans (100 traces × 20). Direct insert takes seconds where OTLP at
   this machine's rate would take minutes; its parts are fewer and larger than ingest leaves, and
   the ingest during the measurement adds the small live parts on top. The insert goes through
   the store's materialized views like any other, so the per-session summaries the explorer
   reads (pipeline/clickhouse/sessions.py) are built as they would be by ingest;
2. idle: with the daemon running on that store and nothing offered, the poller's requests
   `--idle` times one after the other: the same requests' latency without ingest beside them;
3. measure (the daemon again, on that store): testkit/fleet.py's seeded fleet is offered over
   OTLP/gRPC at `--rate` (10k spans/s, open loop, as bench_soak) for `--rounds` interleaved rounds
   of `--seconds`: without polling, then with a UI poller that each `--poll-interval` (2 s) asks
   `GET /api/sessions` (the list page as the UI opens it: no filter, the configured row limit),
   `GET /api/sessions/<the 2,000-span session>` and `GET /api/tail` (the live tail's own 2 s
   poll), one after the other: a user reopening both pages every 2 s, harsher than the UI alone.
   Ingest per round is the spans the chdb exporter stored (its sent-spans counter), per second;
   latencies are client-side.

    .venv/bin/python -m benchmarks.bench_explorer                       # ~5-6 minutes
    .venv/bin/python -m benchmarks.bench_explorer --spans 100000 --rounds 2 --seconds 10 --no-write
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import threading
import time
from pathlib import Path

import requests

from benchmarks.bench_soak import Tally, chdb_sent, default_config, offer, pool, requests_of
from benchmarks.results import table, write_section
from testkit.harness import Daemon, wait_until

SECTION = "explorer: sessions list and a 2,000-span session under ingest (config/default.yaml)"
TABLE = "otel.otel_traces"
BIG_SESSION = "bench-session-2000"
# One generated span per number n: trace n/10 (or /20), position n%10 in it, session trace/20.
SPAN_SQL = """INSERT INTO {table} (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName,
    ResourceAttributes, ScopeName, SpanAttributes, Duration, StatusCode, StatusMessage)
SELECT fromUnixTimestamp64Nano(toInt64({base_ns} + s * {session_gap_ns} + (t % {traces}) * 30000000 + i * 1000000)),
    lower(hex(MD5(concat('{prefix}t', toString(t))))),
    lower(substring(hex(MD5(concat('{prefix}s', toString(n)))), 1, 16)),
    if(i = 0, '', lower(substring(hex(MD5(concat('{prefix}s', toString(t * {per_trace} + intDiv(i - 1, 3))))), 1, 16))),
    multiIf(i = 0, 'invoke_agent planner', i % 2 = 1, 'chat gpt-4o', 'execute_tool search'),
    if(i % 2 = 1, 'Client', 'Internal'), service, map('service.name', service), 'bench',
    mapUpdate(map('gen_ai.conversation.id', session, 'gen_ai.agent.name', concat('agent-', toString(s % 50)),
                  'gen_ai.operation.name', multiIf(i = 0, 'invoke_agent', i % 2 = 1, 'chat', 'execute_tool')),
              if(i % 2 = 1, map('gen_ai.request.model', 'gpt-4o', 'gen_ai.usage.input_tokens', toString(100 + n % 900),
                                'gen_ai.usage.output_tokens', toString(20 + n % 300),
                                'gen_ai.usage.cost', toString((100 + n % 900) * 0.0000025)),
                 map('gen_ai.tool.name', 'search', 'gen_ai.tool.call.arguments', '{{"q": "weather"}}'))),
    toUInt64(1000000 + cityHash64(n) % 900000000), if(cityHash64(n, 7) % 50 = 0, 'Error', 'Unset'),
    if(cityHash64(n, 7) % 50 = 0, 'tool timed out', '')
FROM (SELECT number AS n, intDiv(number, {per_trace}) AS t, number % {per_trace} AS i, intDiv(t, {traces}) AS s,
             {session_expr} AS session, concat('agent-svc-', toString(s % 8)) AS service
      FROM numbers({start}, {count}))"""


def explorer_config() -> tuple[str, str]:
    """default.yaml on free ports, and the explorer's base URL in it."""
    text = default_config()
    endpoint = re.search(r"explorer:\s*\n\s*endpoint: (\S+)", text).group(1)
    return text, f"http://{endpoint}"


def load(path: Path, spans: int) -> float:
    """Insert `spans` generated spans and the 2,000-span session into the store at `path`; seconds taken."""
    import chdb

    started = time.monotonic()
    conn = chdb.connect(str(path))
    base_ns = time.time_ns() - 3600 * 10**9
    per_session = 20 * 10
    gap = 3600 * 10**9 // max(1, spans // per_session)
    for start in range(0, spans, 200_000):
        conn.query(SPAN_SQL.format(table=TABLE, base_ns=base_ns, session_gap_ns=gap, traces=20, per_trace=10,
                                   prefix="", session_expr="concat('session-', toString(s))", start=start,
                                   count=min(200_000, spans - start)))
    conn.query(SPAN_SQL.format(table=TABLE, base_ns=time.time_ns() - 600 * 10**9, session_gap_ns=0, traces=100,
                               per_trace=20, prefix="big", session_expr=f"'{BIG_SESSION}'", start=0, count=2000))
    stored = int(conn.query(f"SELECT count() FROM {TABLE}", "CSV").bytes().strip())
    summarised = int(conn.query(f"SELECT sum(Spans) FROM {TABLE}_sessions", "CSV").bytes().strip())
    settle(conn)
    conn.close()
    assert stored >= spans + 2000, f"stored {stored} spans, meant {spans + 2000}"
    assert summarised == stored, f"the session summaries count {summarised} spans of {stored}"
    return time.monotonic() - started


def settle(conn, limit: float = 120.0) -> None:
    """Until the engine's background merges of the loaded parts are done (at most `limit` s), so
    the daemon does not spend the measurement finishing them."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and int(conn.query("SELECT count() FROM system.merges", "CSV").bytes()):
        time.sleep(0.5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Poller(threading.Thread):
    """The UI: the sessions list, the big session and the live tail (which the UI polls every 2 s),
    one after the other every `interval` seconds (back to back when they take longer), while `on` is set."""

    def __init__(self, base: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.base, self.interval = base, interval
        self.on, self.done = threading.Event(), threading.Event()
        self.samples: dict[str, list[float]] = {"sessions": [], "session": [], "tail": []}
        self.checked: dict[str, int] = {}
        self.failures: dict[str, int] = {}

    def run(self) -> None:
        with requests.Session() as http:
            while not self.done.is_set():
                if not self.on.wait(0.1):
                    continue
                began = time.monotonic()
                self.ask(http)
                time.sleep(max(0.0, began + self.interval - time.monotonic()))

    def ask(self, http: requests.Session) -> None:
        """The three requests, one after the other."""
        self._get(http, "sessions", "/api/sessions")
        self._get(http, "session", f"/api/sessions/{BIG_SESSION}")
        self._get(http, "tail", "/api/tail?limit=200")

    def idle(self, times: int) -> dict[str, list[float]]:
        """The requests `times` times with nothing else asked of the daemon; their latencies."""
        with requests.Session() as http:
            for _ in range(times):
                self.ask(http)
        samples, self.samples = self.samples, {name: [] for name in self.samples}
        return samples

    def _get(self, http: requests.Session, name: str, path: str) -> None:
        began = time.perf_counter()
        response = http.get(self.base + path, timeout=60)
        elapsed = time.perf_counter() - began
        if not response.ok:  # counted and shown, not fatal: the UI would show the error and ask again
            what = f"{name}: {response.status_code} {' '.join(response.text.split())[:300]}"
            self.failures[what] = self.failures.get(what, 0) + 1
            return
        body = response.json()
        self.checked[name] = len(body["sessions"]) if name == "sessions" else len(body["spans"])
        self.samples[name].append(elapsed * 1000)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def measure(daemon: Daemon, base: str, args: argparse.Namespace) -> dict:
    """Interleaved rounds of ingest without and with the poller; stored spans/s per round."""
    templates = pool(4000, 512, args.seed)
    source = requests_of(templates, args.seed)
    target = f"127.0.0.1:{daemon.ports['grpc']}"
    poller = Poller(base, args.poll_interval)
    assert daemon.proc is not None
    cpu = cpu_seconds(daemon.proc.pid)
    idle = poller.idle(args.idle)
    idle_cpu_ms = (cpu_seconds(daemon.proc.pid) - cpu) * 1000 / args.idle
    poller.start()
    rates: dict[bool, list[float]] = {False: [], True: []}
    tally = Tally()
    load = [os.getloadavg()[0]]
    asyncio.run(offer(target, source, args.rate, 5, tally, 16, 0.05))  # warm-up
    for number in range(args.rounds * 2):
        polling = number % 2 == 1
        before, began = chdb_sent(daemon), time.monotonic()
        if polling:  # the poller stops with the offer, not after the refused requests' retries drain
            poller.on.set()
            threading.Timer(args.seconds, poller.on.clear).start()
        asyncio.run(offer(target, source, args.rate, args.seconds, tally, 16, 0.05))
        poller.on.clear()
        rates[polling].append((chdb_sent(daemon) - before) / (time.monotonic() - began))
        print(f"round {number + 1}: polling={polling} stored {rates[polling][-1]:,.0f} spans/s", flush=True)
    load.append(os.getloadavg()[0])
    poller.done.set()
    poller.join(60)
    return {"rates": rates, "samples": poller.samples, "checked": poller.checked, "tally": tally,
            "failures": poller.failures, "idle": idle, "load": load, "idle_cpu_ms": idle_cpu_ms}


def _row(label: str, name: str, result: dict, target: float | None) -> list:
    """One request's line: its latencies while ingesting beside those with the daemon idle."""
    samples, idle = result["samples"][name], result["idle"][name]
    p95 = quantile(samples, 0.95)
    met = "" if target is None else ("yes" if p95 < target else "**no**")
    return [label, len(samples), f"{quantile(samples, 0.5):.0f}", f"{p95:.0f}",
            f"{quantile(idle, 0.5):.0f} / {quantile(idle, 0.95):.0f}", f"< {target:.0f}" if target else "", met]


def report(result: dict, args: argparse.Namespace, load_seconds: float) -> str:
    rates, checked = result["rates"], result["checked"]
    quiet, polled = statistics.mean(rates[False]), statistics.mean(rates[True])
    ratio = polled / quiet
    rows = [_row(f"`GET /api/sessions` ({checked.get('sessions', 0)} rows)", "sessions", result, 200),
            _row(f"`GET /api/sessions/<id>` ({checked.get('session', 0)} spans)", "session", result, 200),
            _row("`GET /api/tail?limit=200`", "tail", result, None)]
    ingest = [["without polling", " / ".join(f"{r:,.0f}" for r in rates[False]), f"{quiet:,.0f}"],
              ["with the UI polling", " / ".join(f"{r:,.0f}" for r in rates[True]), f"{polled:,.0f}"]]
    refused = dict(result["tally"].refusals)
    load = " → ".join(f"{value:.1f}" for value in result["load"])
    return (f"Store: {args.spans:,} generated spans + one session of 2,000, inserted directly into the "
            f"store before the daemon started ({load_seconds:.0f} s, the per-session summaries built by their "
            f"materialized views on the way); then the fleet offered at "
            f"{args.rate:,.0f} spans/s over OTLP/gRPC during {args.rounds} × 2 interleaved rounds of "
            f"{args.seconds:.0f} s; the poller asks the three endpoints below, one after the other (back to "
            f"back when they take longer), every {args.poll_interval:g} s in the polling rounds. \"idle\": the "
            f"same requests {args.idle} times before the rounds, with nothing offered; the daemon's CPU time "
            f"(user + system, all its threads) per round of the three: {result['idle_cpu_ms']:.0f} ms. The "
            f"machine's 1-minute load average (2 cores, shared with other jobs) at the start and end of the "
            f"rounds: {load}.\n\n"
            + table(["request, while ingesting", "samples", "p50 ms", "p95 ms", "idle p50 / p95 ms", "target",
                     "met"], rows)
            + "\n\n" + table(["ingest (stored spans/s)", "per round", "mean"], ingest)
            + f"\n\nIngest with polling / without: **{ratio:.3f}** ({(1 - ratio) * 100:.1f} % slowdown; target "
            f"≤ 5 %). Offered {args.rate:,.0f} spans/s; the stored rate is what this shared 2-core machine "
            f"sustained (refusals, retried: {refused or 'none'}).\n\nFailed UI requests (not in the latencies): "
            + ("; ".join(f"{count} × {what}" for what, count in result["failures"].items()) or "none") + ".")


def started(daemon: Daemon) -> Daemon:
    """The daemon started and healthy; on this shared machine a start can take over the test
    harness's 30 s (imports and the engine's first start alone took 40 s at a load average of 16)."""
    daemon.start(wait=False)
    wait_until(daemon.healthy, timeout=180, interval=0.2, message=f"daemon health (log: {daemon.log_path})")
    return daemon


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--idle", type=int, default=10)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    config, base = explorer_config()
    daemon = Daemon(config)
    try:
        started(daemon).stop()
        load_seconds = load(daemon.dir / "chdb", args.spans)
        print(f"loaded {args.spans:,} spans in {load_seconds:.0f}s", flush=True)
        started(daemon)
        wait_until(lambda: requests.get(f"{base}/api/sessions/{BIG_SESSION}", timeout=60).ok, timeout=60,
                   message="explorer answers")
        result = measure(daemon, base, args)
        daemon.stop()
    finally:
        daemon.kill()
    text = report(result, args, load_seconds)
    print(text)
    if not args.no_write:
        write_section(SECTION, "python -m benchmarks.bench_explorer", text)


if __name__ == "__main__":
    main()

"""memory_limiter: the limit follows the process's cgroup (v2 and v1), and the limiter refuses,
retryably, above its soft limit.

The cgroup trees here are directories written by the test: this sandbox runs with no memory
limit on its cgroup, and a real part cannot show one (a fake for a state the machine cannot
be put in). The paths and file formats are the kernel's."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.errors import Refused
from processors.memory_limiter import MIB, MemoryLimiter, MemoryLimiterConfig, cgroup_memory_limit, total_memory

UNLIMITED_V1 = "9223372036854771712"


def tree(root: Path, files: dict[str, str], proc: str) -> tuple[Path, Path]:
    for name, text in files.items():
        path = root / "cgroup" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    (root / "proc").write_text(proc)
    return root / "proc", root / "cgroup"


def test_cgroup_v2_limit_of_an_ancestor_applies(tmp_path: Path) -> None:
    proc, root = tree(tmp_path, {"kubepods/pod1/app/memory.max": "max", "kubepods/pod1/memory.max": str(512 * MIB)},
                      "0::/kubepods/pod1/app\n")
    assert cgroup_memory_limit(proc, root) == 512 * MIB
    assert total_memory(proc, root) == 512 * MIB


def test_cgroup_v2_namespaced_container_reads_the_mount_root(tmp_path: Path) -> None:
    proc, root = tree(tmp_path, {"memory.max": str(300 * MIB)}, "0::/\n")
    assert cgroup_memory_limit(proc, root) == 300 * MIB


def test_cgroup_v1_memory_controller(tmp_path: Path) -> None:
    proc, root = tree(tmp_path, {"memory/memory.limit_in_bytes": UNLIMITED_V1,
                                 "memory/docker/abc/memory.limit_in_bytes": str(256 * MIB)},
                      "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n")
    assert cgroup_memory_limit(proc, root) == 256 * MIB
    assert total_memory(proc, root) == 256 * MIB


def test_no_limit_means_physical_memory(tmp_path: Path) -> None:
    proc, root = tree(tmp_path, {"memory/memory.limit_in_bytes": UNLIMITED_V1, "unified/memory.max": "max"},
                      "4:memory:/\n0::/\n")
    physical = total_memory(tmp_path / "absent", root)
    assert total_memory(proc, root) == physical
    assert cgroup_memory_limit(tmp_path / "absent", root) is None


def test_limit_percentage_is_a_share_of_the_cgroup_limit(tmp_path: Path) -> None:
    proc, root = tree(tmp_path, {"memory.max": str(1000 * MIB)}, "0::/\n")
    config = MemoryLimiterConfig(check_interval=1, limit_percentage=80, spike_limit_percentage=20)
    assert config.limits(total_memory(proc, root)) == (600 * MIB, 800 * MIB)


class Sink:
    def __init__(self) -> None:
        self.batches: list = []

    async def consume(self, batch) -> None:
        self.batches.append(batch)


class Batch:
    item_count = 3


def test_refuses_retryably_above_the_soft_limit_and_accepts_again_below() -> None:
    usage = [400 * MIB]
    config = MemoryLimiterConfig(check_interval=1, limit_mib=450, spike_limit_mib=64)
    sink = Sink()
    released: list[int] = []
    limiter = MemoryLimiter(Settings.make(Kind.PROCESSOR, ComponentID("memory_limiter"), Signal.TRACES), config,
                            sink, read_usage=lambda: usage[0], release_pages=lambda: released.append(1))
    limiter.check()
    assert released == [1]  # it gave back clean pages before deciding to refuse
    with pytest.raises(Refused) as refused:
        asyncio.run(limiter.consume(Batch()))
    assert refused.value.retry_after >= 1 and not sink.batches
    usage[0] = 300 * MIB
    limiter.check()
    asyncio.run(limiter.consume(Batch()))
    assert len(sink.batches) == 1


def test_a_burst_between_ticks_is_refused_once_the_last_reading_is_100_ms_old() -> None:
    """The tick is `check_interval` (10 s here) apart; usage crosses the soft limit just after
    one. A batch within 100 ms of that reading passes (the reading is fresh); one 150 ms after it
    re-reads usage and is refused, long before the next tick."""
    from dataclasses import replace

    from pipeline.clock import ManualClock

    clock = ManualClock()
    usage = [300 * MIB]
    config = MemoryLimiterConfig(check_interval=10, limit_mib=450, spike_limit_mib=64)
    sink = Sink()
    settings = replace(Settings.make(Kind.PROCESSOR, ComponentID("memory_limiter"), Signal.TRACES), clock=clock)
    limiter = MemoryLimiter(settings, config, sink, read_usage=lambda: usage[0], release_pages=lambda: None)
    limiter.check()
    usage[0] = 420 * MIB
    asyncio.run(limiter.consume(Batch()))
    assert len(sink.batches) == 1
    asyncio.run(clock.advance(0.15))
    with pytest.raises(Refused):
        asyncio.run(limiter.consume(Batch()))
    assert len(sink.batches) == 1 and limiter.refusing


ENGINE_PROBE = """
import json, sys
from pipeline.chdb_engine import connect
conn = connect(sys.argv[1])
rows = conn.query("SELECT name, value FROM system.server_settings WHERE name IN "
                  "('max_server_memory_usage', 'mark_cache_size', 'primary_index_cache_size')", "JSONEachRow")
settings = {row["name"]: int(row["value"]) for row in map(json.loads, rows.bytes().decode().splitlines())}
resident, current = 0, ""
for line in open("/proc/self/smaps"):
    parts = line.split()
    if "-" in parts[0] and not parts[0].endswith(":"):
        current = parts[5] if len(parts) > 5 else ""
    elif parts[0] == "Rss:" and "/chdb/_chdb" in current:
        resident += int(parts[1])
total = conn.query("SELECT sum(number) FROM numbers(1000)", "TabSeparated").bytes().decode().strip()
print(json.dumps({"settings": settings, "resident_kib": resident, "sum": total}))
"""


def test_the_chdb_engine_is_capped_by_its_own_settings_and_gives_back_its_start_up_pages(tmp_path: Path) -> None:
    """The engine in a process of its own (chDB hosts one directory per process), opened as the
    chdb exporter opens it: server-sized defaults (90 % of RAM, 5 GiB caches) are replaced, and
    the library's code that start-up touched once (about 300 MB) is no longer resident."""
    import json
    import subprocess
    import sys

    from testkit.harness import ROOT

    out = subprocess.run([sys.executable, "-c", ENGINE_PROBE, str(tmp_path / "chdb")], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["settings"] == {"max_server_memory_usage": 256 * MIB, "mark_cache_size": 16 * MIB,
                                 "primary_index_cache_size": 16 * MIB}
    assert probe["resident_kib"] * 1024 < 150 * MIB
    assert probe["sum"] == "499500"  # and the engine still runs


def test_released_pages_come_back_unchanged() -> None:
    """Release every clean read-only mapping of this very process, then use the libraries again."""
    import numpy

    from pipeline.residency import clean_read_only_mappings, release_clean_pages

    assert all(start < end for start, end, _ in clean_read_only_mappings("/"))
    assert release_clean_pages() > 0
    assert int(numpy.arange(1000).sum()) == 499500 and sorted({3, 1, 2}) == [1, 2, 3]


def test_the_shipped_default_config_sets_a_memory_limit_under_512_mib() -> None:
    """config/default.yaml as shipped (ports and data directory moved by its own environment
    variables): its memory_limiter's hard limit is below 512 MiB, and the idle daemon is below
    the soft limit, so it accepts data. Before, the limit was 80 % of the machine (18 GiB here),
    which never engaged. (Whether the RSS stays under it under load is the soak benchmark's
    question: benchmarks/bench_soak.py.)"""
    import re

    from testkit.harness import ROOT, Daemon, free_port

    text = (ROOT / "config" / "default.yaml").read_text()
    daemon = Daemon(text)
    names = {"grpc": "OTLP_GRPC", "http": "OTLP_HTTP", "health": "HEALTH", "debug": "DEBUG"}
    daemon.env = {f"AGENTDBG_{var}_ENDPOINT": f"127.0.0.1:{daemon.ports[port]}" for port, var in names.items()}
    daemon.env |= {f"AGENTDBG_{var}_ENDPOINT": f"127.0.0.1:{free_port()}"
                   for var in set(re.findall(r"AGENTDBG_(\w+)_ENDPOINT", text)) - set(names.values())}
    daemon.env |= {"AGENTDBG_METRICS_ADDRESS": f"127.0.0.1:{daemon.ports['metrics']}",
                   "AGENTDBG_DATA_DIR": str(daemon.dir / "data")}
    with daemon:
        hard = daemon.metric("agentdbg_memory_limiter_limit_bytes", processor="memory_limiter", limit="hard")
        soft = daemon.metric("agentdbg_memory_limiter_limit_bytes", processor="memory_limiter", limit="soft")
        usage = daemon.metric("agentdbg_memory_limiter_usage_bytes", processor="memory_limiter")
    assert 0 < soft < hard <= 512 * MIB
    assert 0 < usage < soft

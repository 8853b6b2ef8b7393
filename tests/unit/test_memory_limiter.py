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
    span_count = 3


def test_refuses_retryably_above_the_soft_limit_and_accepts_again_below() -> None:
    usage = [400 * MIB]
    config = MemoryLimiterConfig(check_interval=1, limit_mib=450, spike_limit_mib=64)
    sink = Sink()
    limiter = MemoryLimiter(Settings.make(Kind.PROCESSOR, ComponentID("memory_limiter"), Signal.TRACES), config,
                            sink, read_usage=lambda: usage[0])
    limiter.check()
    with pytest.raises(Refused) as refused:
        asyncio.run(limiter.consume(Batch()))
    assert refused.value.retry_after >= 1 and not sink.batches
    usage[0] = 300 * MIB
    limiter.check()
    asyncio.run(limiter.consume(Batch()))
    assert len(sink.batches) == 1

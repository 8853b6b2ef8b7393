"""`memory_limiter`: refuse data, retryably, while the process uses too much memory.

Every `check_interval` it reads the resident set size. Above the soft limit
(`limit_mib - spike_limit_mib`) it first gives back what costs nothing to get again — the
clean, read-only code pages of shared libraries that start-up touched once
(pipeline/residency.py; chDB's alone are 100-300 MB) — and above the hard limit (`limit_mib`)
it also forces a garbage collection; if usage is still above the soft limit it refuses new
batches with "data refused due to high memory usage" (RESOURCE_EXHAUSTED / 429 with a retry
hint at the receiver) until it is back below. Limits may instead be given as a percentage of
the memory the process may use: its cgroup's limit (v2 `memory.max`, v1
`memory.limit_in_bytes`, the tightest of its cgroup and their ancestors) when there is one,
else the machine's. Nothing it refuses was accepted, so nothing is lost: the client retries.

Between ticks, a batch arriving more than 100 ms after the last reading re-reads usage first
(a read of /proc/self/statm, microseconds), so a burst is refused within 100 ms of crossing the
soft limit instead of running on for up to a whole `check_interval`: at ten times the
sustainable rate, half a second of accepted work is tens of MiB the limit would not see.
"""
from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path
from typing import Callable

from pydantic import NonNegativeInt, model_validator

from pipeline.component import Consumer, Factory, Kind, Processor, Settings, Signal, StrictConfig
from pipeline.config.units import Duration
from pipeline.errors import Refused
from pipeline.host import Host
from pipeline.pdata.batch import Batch
from pipeline.residency import release_memory
from pipeline.telemetry import metrics

MIB = 1024 * 1024
RECHECK_AFTER = 0.1  # seconds: how stale a reading the request path may act on


class MemoryLimiterConfig(StrictConfig):
    check_interval: Duration
    limit_mib: NonNegativeInt = 0
    spike_limit_mib: NonNegativeInt = 0
    limit_percentage: NonNegativeInt = 0
    spike_limit_percentage: NonNegativeInt = 0

    @model_validator(mode="after")
    def _check(self) -> "MemoryLimiterConfig":
        if self.check_interval <= 0:
            raise ValueError("check_interval must be greater than zero")
        if not self.limit_mib and not self.limit_percentage:
            raise ValueError("set limit_mib or limit_percentage")
        if self.limit_mib and self.spike_limit_mib >= self.limit_mib:
            raise ValueError("spike_limit_mib must be smaller than limit_mib")
        if self.limit_percentage and not (0 < self.limit_percentage <= 100):
            raise ValueError("limit_percentage must be between 1 and 100")
        if self.limit_percentage and self.spike_limit_percentage >= self.limit_percentage:
            raise ValueError("spike_limit_percentage must be smaller than limit_percentage")
        return self

    def limits(self, total_memory: int) -> tuple[int, int]:
        """(soft, hard) in bytes."""
        if self.limit_mib:
            hard = self.limit_mib * MIB
            spike = self.spike_limit_mib * MIB if self.spike_limit_mib else hard // 5
        else:
            hard = total_memory * self.limit_percentage // 100
            spike = (total_memory * self.spike_limit_percentage // 100) if self.spike_limit_percentage else hard // 5
        return hard - spike, hard


CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def total_memory(proc_cgroup: Path = PROC_CGROUP, cgroup_root: Path = CGROUP_ROOT) -> int:
    """The memory this process may use: its cgroup's limit when there is one (and it is below
    physical memory), else physical memory. What `limit_percentage` is a share of."""
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limit = cgroup_memory_limit(proc_cgroup, cgroup_root)
    return min(limit, physical) if limit else physical


def cgroup_memory_limit(proc_cgroup: Path = PROC_CGROUP, cgroup_root: Path = CGROUP_ROOT) -> int | None:
    """The tightest memory limit on this process's cgroup and its ancestors, in bytes; None
    when none is set or none can be read.

    cgroup v2 (`0::/path` in /proc/self/cgroup): `memory.max` ("max" is no limit) under the
    unified mount. cgroup v1 (a `memory` controller line): `memory.limit_in_bytes` under
    `<root>/memory` (no limit reads as a huge number, which the caller caps at physical
    memory). Inside a container the path may be the host's while the mount shows the
    container's own cgroup at its root, so the mount's root file is read too. As otelcol does
    for `limit_percentage`, the limit is the smaller of this and physical memory."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    found: list[int] = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":
            found += _limits(cgroup_root, path, "memory.max")
        elif "memory" in controllers.split(","):
            found += _limits(cgroup_root / "memory", path, "memory.limit_in_bytes")
    return min(found) if found else None


def _limits(mount: Path, path: str, name: str) -> list[int]:
    """The limits in `name` of the cgroup at `path` under `mount`, of its ancestors, and of the mount's root."""
    directory = mount / path.strip("/")
    candidates = [directory, *directory.parents]
    out = []
    for candidate in dict.fromkeys(c for c in candidates if c == mount or mount in c.parents):
        try:
            text = (candidate / name).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            out.append(int(text))
    return out


class MemoryLimiter(Processor[Batch]):
    def __init__(self, settings: Settings, config: MemoryLimiterConfig, next_consumer: Consumer,
                 read_usage: Callable[[], int] = metrics.rss_bytes,
                 release_pages: Callable[[], object] = release_memory) -> None:
        super().__init__(settings, next_consumer)
        self.config = config
        self.soft, self.hard = config.limits(total_memory())
        self.read_usage = read_usage
        self.release_pages = release_pages
        self.refusing = False
        self._checked_at = float("-inf")
        labels = (str(settings.id), (settings.signal or Signal.TRACES).value)
        self._refused = metrics.processor_refused_items.labels(*labels)
        metrics.memory_limiter_limit_bytes.labels(str(settings.id), "soft").set(self.soft)
        metrics.memory_limiter_limit_bytes.labels(str(settings.id), "hard").set(self.hard)
        self._usage = metrics.memory_limiter_usage_bytes.labels(str(settings.id))
        self._task: asyncio.Task[None] | None = None

    async def start(self, host: Host) -> None:
        self.check()
        self._task = asyncio.create_task(self._loop(), name=f"{self.id}-check")

    async def shutdown(self, deadline: float | None = None) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def check(self) -> None:
        self._checked_at = self.settings.clock.monotonic()
        usage = self.read_usage()
        if usage > self.soft:
            if usage > self.hard:
                gc.collect()
            self.release_pages()
            usage = self.read_usage()
        self._usage.set(usage)
        refusing = usage > self.soft
        if refusing != self.refusing:
            level = self.log.warning if refusing else self.log.info
            level("memory usage is above the soft limit; refusing data" if refusing
                  else "memory usage is back below the soft limit; accepting data",
                  extra={"kv": {"usage_mib": usage // MIB, "soft_limit_mib": self.soft // MIB,
                                "hard_limit_mib": self.hard // MIB}})
        self.refusing = refusing

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.check_interval)
            self.check()

    async def consume(self, batch: Batch) -> None:
        if self.settings.clock.monotonic() - self._checked_at > RECHECK_AFTER:
            self.check()
        if self.refusing:
            self._refused.inc(batch.item_count)
            raise Refused("data refused due to high memory usage",
                          retry_after=max(1.0, self.config.check_interval), overload=True)
        await self.next.consume(batch)


factory = Factory("memory_limiter", Kind.PROCESSOR, MemoryLimiterConfig, MemoryLimiter,
                  signals=frozenset({Signal.TRACES, Signal.METRICS, Signal.LOGS}),
                  description="refuse data above a memory limit")

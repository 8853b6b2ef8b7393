"""Give back the resident pages of a shared library's code that its start-up touched once.

chDB's library is 550 MB, most of it ClickHouse's machine code. Importing it and starting the
engine run static initialisers spread over the whole text segment, which leaves about 300 MB
of its file pages mapped into this process (RSS that is file-backed, clean and never used
again: inserts and queries touch a fraction of it). The kernel would reclaim those pages
under memory pressure; until then they count against the process's RSS, and so against a
memory limit read from RSS.

`release_clean_pages` drops them from this process's page tables with `madvise(MADV_DONTNEED)`
— only for read-only mappings of the library that hold no private (written) pages, where
that is exact: a page touched again is faulted back in from the page cache, unchanged. A
mapping with a written page (relocations in RELRO) is left alone. Nothing is freed in the
page cache; other processes mapping the same library are not affected.
"""
from __future__ import annotations

import ctypes
import logging
import time
from pathlib import Path
from typing import Callable

MADV_DONTNEED = 4
log = logging.getLogger("agentdbg.residency")


def clean_read_only_mappings(library: str, smaps: Path = Path("/proc/self/smaps")) -> list[tuple[int, int, int]]:
    """(start, end, resident KiB) of the read-only private mappings of files whose path contains
    `library` that have no anonymous (copied-on-write) or dirty pages."""
    out: list[tuple[int, int, int]] = []
    current: dict | None = None
    mappings: list[dict] = []
    for line in smaps.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if "-" in parts[0] and not parts[0].endswith(":"):
            current = {"range": parts[0], "perms": parts[1], "path": parts[5] if len(parts) > 5 else ""}
            mappings.append(current)
        elif current is not None and parts[0] in ("Rss:", "Anonymous:", "Private_Dirty:", "Shared_Dirty:"):
            current[parts[0]] = int(parts[1])
    for mapping in mappings:
        clean = not mapping.get("Anonymous:", 1) and not mapping.get("Private_Dirty:", 1) \
            and not mapping.get("Shared_Dirty:", 1)
        if library in mapping["path"] and mapping["perms"] in ("r-xp", "r--p") and clean:
            start, end = (int(x, 16) for x in mapping["range"].split("-"))
            out.append((start, end, mapping.get("Rss:", 0)))
    return out


# library → (when /proc/self/smaps was read, the clean mappings found): reading smaps costs
# ~20 ms in a daemon with chDB loaded, /proc/self/maps (which re-checks them) ~1 ms.
_found: dict[str, tuple[float, list[tuple[int, int, int]]]] = {}


def release_clean_pages(library: str = "/", rescan_after: float = 60.0) -> int:
    """Drop the clean read-only resident pages of `library` (default: every mapped file) from
    this process; returns the KiB that were resident in those mappings when they were last
    scanned (0, logged, when the platform has no madvise or /proc).

    The mappings are found in /proc/self/smaps at most every `rescan_after` seconds; in
    between, each is released only if /proc/self/maps still shows a read-only private mapping
    of a file at exactly that range (a range unmapped and reused for other memory is skipped)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        scanned, ranges = _found.get(library, (float("-inf"), []))
        if time.monotonic() - scanned > rescan_after:
            ranges = clean_read_only_mappings(library)
            _found[library] = (time.monotonic(), ranges)
        current = _read_only_file_ranges()
        released = 0
        for start, end, resident in ranges:
            if (start, end) in current and libc.madvise(start, end - start, MADV_DONTNEED) == 0:
                released += resident
        return released
    except (OSError, AttributeError, ValueError) as exc:
        log.info("could not release start-up pages", extra={"kv": {"library": library, "error": str(exc)}})
        return 0


def _read_only_file_ranges(maps: Path = Path("/proc/self/maps")) -> set[tuple[int, int]]:
    """The address ranges of read-only private mappings of files, now."""
    out = set()
    for line in maps.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[1] in ("r-xp", "r--p") and parts[5].startswith("/"):
            start, end = (int(x, 16) for x in parts[0].split("-"))
            out.add((start, end))
    return out


# name → a callable that asks an allocator this process hosts (chDB's jemalloc) to give its
# free pages back to the kernel. Registered by whoever owns that allocator, so memory_limiter
# can ask for them without knowing which engines are loaded.
_releasers: dict[str, Callable[[], None]] = {}


def register_releaser(name: str, release: Callable[[], None]) -> None:
    """Have `release_memory` call `release` (it must not block: queue the work and return)."""
    _releasers[name] = release


def unregister_releaser(name: str) -> None:
    _releasers.pop(name, None)


def trim_heap() -> bool:
    """Return the C heap's free pages to the kernel (glibc's `malloc_trim`). Python's large
    objects (request bytes, column buffers) come from that heap; freed, they stay resident until
    trimmed, so a burst's peak would otherwise stay in RSS long after the burst. False where
    there is no glibc."""
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False


def release_memory() -> int:
    """What memory_limiter does above its soft limit, in the way otelcol's forces a GC there:
    drop clean library pages (returns their KiB, as `release_clean_pages`), trim the C heap,
    and ask each registered allocator to purge its free pages."""
    released = release_clean_pages()
    trim_heap()
    for release in list(_releasers.values()):
        try:
            release()
        except Exception as exc:  # a releaser's failure must not stop the limiter's check
            log.info("could not release an allocator's pages", extra={"kv": {"error": str(exc)}})
    return released

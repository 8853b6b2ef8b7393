"""Run every benchmark in turn; each rewrites its own section of benchmarks/RESULTS.md.

    make bench            # or: .venv/bin/python -m benchmarks.run_all [name ...]
"""
from __future__ import annotations

import subprocess
import sys
import time

BENCHMARKS = ["bench_core", "bench_pipeline", "bench_columns", "bench_kafka", "bench_genai", "bench_triggers",
              "bench_detection_latency", "bench_safety_latency", "scenarios", "profile_pipeline", "bench_otelcol",
              "bench_explorer"]


def main() -> int:
    chosen = sys.argv[1:] or BENCHMARKS
    failed = []
    for name in chosen:
        started = time.monotonic()
        print(f"== benchmarks.{name}", flush=True)
        if subprocess.run([sys.executable, "-m", f"benchmarks.{name}"]).returncode != 0:
            failed.append(name)
        print(f"== benchmarks.{name} took {time.monotonic() - started:.0f}s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

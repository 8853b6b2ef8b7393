"""Run every benchmark, then the detection-quality suite (evaluation/), in turn; each rewrites its
own section of benchmarks/RESULTS.md.

    make bench            # or: .venv/bin/python -m benchmarks.run_all [name ...]
"""
from __future__ import annotations

import subprocess
import sys
import time

BENCHMARKS = ["bench_core", "bench_pipeline", "bench_columns", "bench_kafka", "bench_genai", "bench_triggers",
              "bench_safety_latency", "profile_pipeline", "bench_otelcol", "bench_explorer"]
# The detection-quality suite (evaluation/) writes its sections of RESULTS.md too.
QUALITY = ["evaluation.detection_latency", "evaluation.scenarios"]


def main() -> int:
    chosen = sys.argv[1:] or BENCHMARKS + QUALITY
    failed = []
    for name in chosen:
        module = name if "." in name else f"benchmarks.{name}"
        started = time.monotonic()
        print(f"== {module}", flush=True)
        if subprocess.run([sys.executable, "-m", module]).returncode != 0:
            failed.append(name)
        print(f"== {module} took {time.monotonic() - started:.0f}s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Write one benchmark's section of benchmarks/RESULTS.md, replacing its previous run."""
from __future__ import annotations

import platform
import re
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = ("# Benchmark results\n\nEvery figure here is written by a script in `benchmarks/`; rerun it to refresh its "
          "section. Timings are ratios measured side by side in one run; absolute numbers stand only beside "
          "their ratio. Machine: shared, 2 cores.\n")


def write_section(name: str, command: str, body: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = (f"<!-- bench:{name} -->\n## {name}\n\nCommand: `{command}` — run {stamp} on "
               f"{platform.python_implementation()} {platform.python_version()}\n\n{body.strip()}\n"
               f"<!-- /bench:{name} -->\n")
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)


def table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)

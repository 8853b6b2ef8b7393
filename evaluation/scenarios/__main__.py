"""`python -m evaluation.scenarios`: run the labelled scenario suite and record it in benchmarks/RESULTS.md.

Options narrow the run (`--kinds error_spike,deadlock --seeds 1 --healthy-seeds 101`); a
narrowed run prints its table but only writes benchmarks/RESULTS.md with `--write`.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import time

from benchmarks.results import write_section
from evaluation.scenarios import catalogue
from evaluation.scenarios.report import markdown
from evaluation.scenarios.runner import Outcome, run_scenario
from evaluation.scenarios.score import score

SECTION = "trigger scenario suite"
COMMAND = "python -m evaluation.scenarios"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part)


def main() -> None:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--kinds", default=",".join(catalogue.KINDS))
    parser.add_argument("--seeds", default=",".join(map(str, catalogue.SEEDS)))
    parser.add_argument("--healthy-seeds", default=",".join(map(str, catalogue.HEALTHY_SEEDS)))
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--write", action="store_true", help="write benchmarks/RESULTS.md even for a narrowed run")
    args = parser.parse_args()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(catalogue.KINDS)
    if unknown:
        parser.error(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(catalogue.KINDS)}")
    chosen = catalogue.scenarios(kinds, _ints(args.seeds), _ints(args.healthy_seeds))
    started = time.perf_counter()
    outcomes = run_all(chosen, args.jobs)
    body = markdown(outcomes, score(outcomes), time.perf_counter() - started, args.jobs)
    print(body)
    full = (kinds, _ints(args.seeds), _ints(args.healthy_seeds)) == (
        catalogue.KINDS, catalogue.SEEDS, catalogue.HEALTHY_SEEDS)
    if full or args.write:
        write_section(SECTION, COMMAND, body)


def run_all(chosen: list[catalogue.Scenario], jobs: int) -> list[Outcome]:
    """Scenarios are independent: spread them over `jobs` processes, longest first."""
    ordered = sorted(chosen, key=lambda s: -s.duration)
    if jobs <= 1:
        outcomes = [run_scenario(s) for s in ordered]
    else:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            outcomes = pool.map(run_scenario, ordered, chunksize=1)
    order = {s.name: i for i, s in enumerate(chosen)}
    return sorted(outcomes, key=lambda o: order[o.scenario.name])


if __name__ == "__main__":
    main()

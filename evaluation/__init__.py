"""The detection-quality suite, apart from the speed benchmarks in benchmarks/.

- `python -m evaluation.scenarios`: the labelled scenarios (a seeded fleet over simulated
  time, healthy or with one fault injected) scored per detector: recall, false positives,
  detection latency and resolution.
- `python -m evaluation.detection_latency`: how long a running daemon takes from the span
  that crosses a threshold to its trigger event.

Each writes its own section of benchmarks/RESULTS.md (`benchmarks.results`), beside the
speed figures; `make bench` (benchmarks/run_all.py) runs them after the benchmarks.
"""

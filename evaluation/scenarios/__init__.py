"""The labelled scenario suite of the trigger detectors: `python -m evaluation.scenarios`.

A scenario is a seeded agent fleet run over simulated time through the real `genai`
processor and `triggers` connector with the product defaults, healthy or with one fault
injected at a known time on known subjects. Its events are scored against the label:
recall, false positives, detection latency and resolution per detector, written to
benchmarks/RESULTS.md.

Modules: `profiles` (the services and the two fleets), `simfleet` (the healthy fleet over
simulated time, extending testkit.fleet.Fleet), `faults` (the injected faults),
`labels` (ground truth), `catalogue` (the scenarios and seeds), `harness` (driving the
pipeline with explicit time), `runner` (one scenario, judged), `score`, `findings` and
`report` (the tables), `__main__` (the command).
"""

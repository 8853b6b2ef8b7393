"""Found by the fuzz run (tests/fuzz/): every rejected OTLP request logged one warning, so a
client sending garbage in a loop flooded the log (1,196 warnings in 4 minutes). Now every
rejection is counted and at most one warning per reason per interval is logged, saying how
many were held back. Paused clock: no sleeps."""
from __future__ import annotations

import logging

from google.rpc import code_pb2

from pipeline.component import ComponentID
from receivers.otlp.ingest import Ingest, Outcome
from receivers.otlp.signals import TRACES


class PausedClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def warnings_of(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "request rejected"]


def test_rejections_are_all_counted_and_logged_once_per_interval(caplog):
    clock = PausedClock()
    ingest = Ingest(ComponentID("otlp", "fuzz_log"), "http", TRACES, clock=clock)
    counter = ingest._rejected_requests["malformed"]
    before = counter._value.get()
    with caplog.at_level(logging.WARNING, logger="agentdbg"):
        for _ in range(500):
            outcome = ingest.reject_request("malformed", Outcome.bad_request("cannot decode the body"))
        assert outcome.code == code_pb2.INVALID_ARGUMENT
        ingest.reject_request("too_large", Outcome.payload_too_large("too large"))  # its own limit
        assert len(warnings_of(caplog)) == 2
        clock.now += Ingest.LOG_INTERVAL
        ingest.reject_request("malformed", Outcome.bad_request("cannot decode the body"))
    assert counter._value.get() - before == 501
    records = warnings_of(caplog)
    assert len(records) == 3
    assert records[-1].kv["held_back"] == 499 and records[-1].kv["reason"] == "malformed"

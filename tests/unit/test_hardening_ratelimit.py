"""The rate limit behind one-line protocol warnings, on a paused clock (issue 9, point 8)."""
from __future__ import annotations

import logging

from aiohttp.http_exceptions import BadHttpMessage

from pipeline.telemetry.logs import RateLimit, ServerLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_lets_one_event_through_per_interval_and_counts_the_rest():
    clock = Clock()
    limit = RateLimit(60.0, clock)
    assert limit.allow() == 0
    assert [limit.allow() for _ in range(5)] == [None] * 5
    clock.now += 59.9
    assert limit.allow() is None
    clock.now += 0.1
    assert limit.allow() == 6          # six held back since the last one shown
    assert limit.allow() is None


def test_server_log_turns_protocol_errors_into_warnings_and_keeps_handler_errors(caplog):
    clock = Clock()
    log = ServerLog(logging.getLogger("agentdbg.test.server"), "127.0.0.1:4318", 60.0, clock)
    with caplog.at_level(logging.DEBUG, logger="agentdbg.test.server"):
        for _ in range(3):
            log.exception("Error handling request from %s", "peer", exc_info=BadHttpMessage("Invalid method\n  PRI"))
        try:
            raise ZeroDivisionError("a bug in a handler")
        except ZeroDivisionError:
            log.exception("Error handling request")
    records = caplog.records
    assert [(r.levelname, r.exc_info is not None) for r in records] == [("WARNING", False), ("ERROR", True)]
    assert records[0].kv["error"] == "Invalid method" and records[0].kv["endpoint"] == "127.0.0.1:4318"

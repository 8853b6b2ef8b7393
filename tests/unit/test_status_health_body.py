"""The health line both health_check and debug_api serve, from pipeline/status.py (one copy, no
extension importing the other): otelcol's `status`, `upSince` (RFC 3339, UTC) and `uptime`."""
from __future__ import annotations

from datetime import datetime, timezone

from pipeline.host import Host
from pipeline.status import health_body


def test_the_health_line_says_the_status_when_it_started_and_for_how_long() -> None:
    host = Host()
    started = datetime(2026, 12, 2, 13, 0, 0, 250_000, tzinfo=timezone.utc).timestamp()
    host.started_at = started
    host.set_status("Server available", ready=True)
    assert health_body(host, now=started + 90.5) == {
        "status": "Server available", "upSince": "2026-12-02T13:00:00.250000Z", "uptime": "90.500s"}


"""An operator's actions on the running daemon's safety state over the debug API: reset a
breaker, lift a throttle. Each is a decision like any other (exported, listed) that says who
asked; they need the debug API's token (401 without it, 403 when no token is configured)."""
from __future__ import annotations

import json
import time
from urllib.parse import quote

import requests

from testkit.harness import BASE_CONFIG, Daemon, wait_until

TOKEN = "admin-token"
OVERLAY = """
extensions:
  debug_api:
    auth: {token: %(token)s}
connectors:
  triggers: {}
processors:
  safety:
    state_file: "{dir}/safety.json"
    breakers:
      database: {timeout: 120s}
exporters:
  file/decisions: {path: "{dir}/decisions.jsonl", flush_interval: 50ms}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [triggers]}
    events: {receivers: [triggers], processors: [safety], exporters: [file/decisions]}
"""
THROTTLED = "service=planner"


def stuck_state(now: float) -> dict:
    """A state file an earlier run left: database open on its second fallback, planner throttled."""
    return {"breakers": {"database": {"state": "open", "tier": 2, "failures": 0.0, "since": now,
                                      "episodes": ["gone-with-the-old-detector"], "cause": {}}},
            "throttles": {THROTTLED: {"rate_per_minute": 1000, "burst_per_second": 100, "fallback": None,
                                      "since": now, "episodes": ["daily@1"]}},
            "canaries": {}, "alerts": {}, "seen": []}


def start(tmp_path, token: str) -> Daemon:
    daemon = Daemon(BASE_CONFIG, workdir=tmp_path, overlay=OVERLAY % {"token": json.dumps(token)})
    (tmp_path / "safety.json").write_text(json.dumps(stuck_state(time.time())))
    return daemon.start()


def post(daemon: Daemon, path: str, body: dict | None = None, token: str | None = TOKEN,
         **headers: str) -> requests.Response:
    headers = {**headers, "Authorization": f"Bearer {token}"} if token else headers
    return requests.post(f"http://127.0.0.1:{daemon.ports['debug']}/debug/{path}", json=body, headers=headers,
                         timeout=5)


def get(daemon: Daemon, path: str) -> object:
    response = requests.get(f"http://127.0.0.1:{daemon.ports['debug']}/debug/{path}",
                            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    response.raise_for_status()
    return response.json()


def exported(daemon: Daemon) -> list[dict]:
    path = daemon.dir / "decisions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_an_operator_resets_a_breaker_and_lifts_a_throttle(tmp_path):
    daemon = start(tmp_path, TOKEN)
    try:
        assert get(daemon, "breakers")["database"]["fallback"] == "offline_mode"
        alice = {"requested_by": "alice", "reason": "postgres is back"}
        assert post(daemon, "breakers/database/reset", alice, token=None).status_code == 401
        assert post(daemon, "breakers/database/reset", alice, token="wrong").status_code == 401
        unknown = post(daemon, "breakers/nosuch/reset", alice)
        assert unknown.status_code == 404 and "database" in unknown.text  # the known breakers are listed
        nobody = post(daemon, "breakers/database/reset", {"reason": "who?"})
        assert nobody.status_code == 400 and "requested_by" in nobody.text

        reset = post(daemon, "breakers/database/reset", alice, **{"Idempotency-Key": "op-1"})
        assert reset.status_code == 200, reset.text
        assert [d["action"] for d in reset.json()["decisions"]] == ["breaker_close", "fallback"]
        again = post(daemon, "breakers/database/reset", alice, **{"Idempotency-Key": "op-1"})  # a client retry
        assert again.status_code == 200 and again.json()["decisions"] == []
        assert get(daemon, "breakers")["database"] == {"state": "closed", "tier": 0, "fallback": None,
                                                       "open_until": None}

        lifted = post(daemon, f"throttles/{quote(THROTTLED, safe='')}/lift", {"requested_by": "bob"})
        assert lifted.status_code == 200, lifted.text
        assert get(daemon, "throttles") == {}
        assert post(daemon, f"throttles/{quote(THROTTLED, safe='')}/lift", {"requested_by": "bob"}).status_code == 404

        wait_until(lambda: len(exported(daemon)) == 3, message="the three decisions exported")
        decisions = exported(daemon)
        assert [(d["action"], d["target"], d["requested_by"]) for d in decisions] == [
            ("breaker_close", "database", "alice"), ("fallback", "database", "alice"),
            ("unthrottle", THROTTLED, "bob")]
        assert decisions[0]["reason"] == "breaker database: reset by alice: postgres is back"
        assert all(d["cause"]["kind"] == "admin" for d in decisions)
        assert [d["id"] for d in get(daemon, "decisions")] == [d["id"] for d in decisions]
    finally:
        daemon.stop()


def test_admin_actions_are_refused_when_the_debug_api_has_no_token(tmp_path):
    daemon = start(tmp_path, "")
    try:
        refused = post(daemon, "breakers/database/reset", {"requested_by": "alice"}, token=None)
        assert refused.status_code == 403 and "auth::token" in refused.text
        assert get(daemon, "breakers")["database"]["state"] == "open"
    finally:
        daemon.stop()

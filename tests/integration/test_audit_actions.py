"""Every operator and admin action leaves a row in the audit table, with who (subject and role),
what, when, from where and the outcome; the safety decisions are there too; and the daemon never
updates or deletes a row of that table.

config/default.yaml (chdb store, explorer, safety in process) with bearertokenauth tokens that
carry roles on the debug API and the explorer. The actions: a breaker reset and a throttle lift
(operator), a SQL query, a reload over the debug API, a reload by SIGHUP and an erasure (admin).
The audit rows are read back with SQL through the explorer, as an auditor would.

Append-only is checked on the engine: chDB lists every DELETE or ALTER ... UPDATE/DELETE a table
got in `system.mutations`; the audit table has none after all of the above, while the erasure's
deletes on the spans table are listed there (so the check does see them).
"""
from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest
import requests
from opentelemetry.sdk.resources import Resource

from testkit.harness import ROOT, Daemon, default_config_env, wait_until
from testkit.otlp_spans import otlp_exporter, sdk_provider

DEFAULT_CONFIG = (ROOT / "config" / "default.yaml").read_text()
OVERLAY = """
extensions:
  bearertokenauth:
    tokens:
      - {token: viewer-secret, role: viewer, subject: dashboards}
      - {token: operator-secret, role: operator, subject: oncall}
      - {token: admin-secret, role: admin, subject: root}
  debug_api:
    auth: {authenticator: bearertokenauth}
  explorer:
    auth: {authenticator: bearertokenauth}
processors:
  safety:
    state_file: "{dir}/safety.json"
    breakers:
      database: {timeout: 120s}
service:
  extensions: [bearertokenauth, health_check, debug_api, file_storage, explorer]
"""
THROTTLED = "service=planner"
SESSION = "sess-audited"
AUDIT, ERASURE, DECISION = "agentdbg.audit/v1", "agentdbg.erasure/v1", "agentdbg.decision/v1"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("audit")
    now = time.time()
    (workdir / "safety.json").write_text(json.dumps({
        "breakers": {"database": {"state": "open", "tier": 1, "failures": 0.0, "since": now, "episodes": ["e"],
                                  "cause": {}}},
        "throttles": {THROTTLED: {"rate_per_minute": 1000, "burst_per_second": 100, "fallback": None,
                                  "since": now, "episodes": ["daily@1"]}},
        "canaries": {}, "alerts": {}, "seen": []}))
    running = Daemon(DEFAULT_CONFIG, workdir=workdir, overlay=OVERLAY)
    running.env = default_config_env(running, workdir / "data")
    running.start()
    try:
        yield running
    finally:
        running.stop()
        running.kill()


def call(daemon: Daemon, surface: str, path: str, token: str, body: Any = None) -> requests.Response:
    return requests.post(f"http://127.0.0.1:{daemon.ports[surface]}{path}", json=body,
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)


def sql(daemon: Daemon, statement: str) -> list[dict[str, Any]]:
    answer = call(daemon, "explorer", "/api/query", "admin-secret", {"sql": statement, "format": "json"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def documents(daemon: Daemon, schema: str) -> list[dict[str, Any]]:
    rows = sql(daemon, f"SELECT Document FROM otel.agentdbg_decisions WHERE Schema = '{schema}' ORDER BY Timestamp")
    return [json.loads(row["Document"]) for row in rows]


def send_session(port: int) -> None:
    provider, _ = sdk_provider(Resource.create({"service.name": "audited-agent"}), otlp_exporter("grpc", port))
    with provider.get_tracer("audit").start_as_current_span("invoke_agent", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": SESSION}):
        pass
    provider.shutdown()


def test_every_action_is_audited_with_who_role_where_and_outcome(daemon: Daemon) -> None:
    send_session(daemon.ports["grpc"])
    wait_until(lambda: sql(daemon, "SELECT count() AS n FROM otel.otel_traces WHERE "
                                   f"SpanAttributes['gen_ai.conversation.id'] = '{SESSION}'")[0]["n"] == 1,
               timeout=60, interval=0.3, message="the session stored")
    assert call(daemon, "debug", "/debug/breakers/database/reset", "viewer-secret").status_code == 403
    reset = call(daemon, "debug", "/debug/breakers/database/reset", "operator-secret", {"reason": "db is back"})
    assert reset.status_code == 200, reset.text
    reset_ids = [decision["id"] for decision in reset.json()["decisions"]]
    lifted = call(daemon, "debug", f"/debug/throttles/{THROTTLED}/lift", "operator-secret", {})
    assert lifted.status_code == 200, lifted.text
    assert call(daemon, "explorer", "/api/query", "admin-secret", {"sql": "SELECT 42 AS answer"}).status_code == 200
    assert call(daemon, "debug", "/debug/reload", "admin-secret").json() == {"reloaded": True}
    reloads = daemon.log().count("configuration reloaded")
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: daemon.log().count("configuration reloaded") > reloads, message="the SIGHUP reload")
    erased = call(daemon, "explorer", "/api/forget", "admin-secret", {"session": SESSION, "requested_by": "dpo"})
    assert erased.status_code == 200 and erased.json()["deleted"]["spans"] == 1, erased.text

    def audited() -> list[dict[str, Any]] | None:
        found = documents(daemon, AUDIT)
        return found if sum(doc["action"] == "config_reload" for doc in found) == 2 else None

    actions = {(doc["action"], doc["by"]["subject"]): doc for doc in wait_until(audited, message="the audit rows")}
    breaker = actions[("breaker_reset", "oncall")]
    assert (breaker["target"], breaker["by"]["role"], breaker["remote"], breaker["status"]) == \
        ("database", "operator", "127.0.0.1", 200)
    assert breaker["details"]["decisions"] == reset_ids and breaker["details"]["reason"] == "db is back"
    assert breaker["at"].endswith("Z")
    throttle = actions[("throttle_lift", "oncall")]
    assert (throttle["target"], throttle["by"]["role"], throttle["status"]) == (THROTTLED, "operator", 200)
    query = next(doc for doc in actions.values() if doc["details"].get("sql") == "SELECT 42 AS answer")
    assert (query["action"], query["by"]["subject"], query["by"]["role"], query["remote"], query["status"]) == \
        ("sql_query", "root", "admin", "127.0.0.1", 200)
    over_http = actions[("config_reload", "root")]
    assert (over_http["by"]["role"], over_http["remote"], over_http["status"]) == ("admin", "127.0.0.1", 200)
    by_signal = actions[("config_reload", "SIGHUP")]
    assert (by_signal["by"]["method"], by_signal["remote"], by_signal["status"]) == ("signal", "local", 200)
    [erasure] = documents(daemon, ERASURE)
    assert erasure["target"] == {"session": SESSION}
    assert {k: erasure["requested_by"][k] for k in ("subject", "role", "claimed", "remote")} == \
        {"subject": "root", "role": "admin", "claimed": "dpo", "remote": "127.0.0.1"}
    # The safety decisions the actions made are in the same table, saying who asked.
    decided = {doc["id"]: doc for doc in documents(daemon, DECISION)}
    assert set(reset_ids) <= set(decided) and all(decided[i]["requested_by"] == "oncall" for i in reset_ids)
    assert any(doc["action"] == "unthrottle" and doc["target"] == THROTTLED for doc in decided.values())


def test_the_audit_table_is_never_updated_or_deleted_from(daemon: Daemon) -> None:
    rows = sql(daemon, "SELECT table, command FROM system.mutations WHERE database = 'otel'")
    tables = {row["table"] for row in rows}
    assert "otel_traces" in tables, rows  # the erasure's lightweight DELETE is a mutation chDB lists
    assert "agentdbg_decisions" not in tables, rows


def test_a_reload_that_replaces_the_debug_api_still_answers(daemon: Daemon) -> None:
    """The reload asked over the debug API changes that API's own config: the old API stops while
    the request that asked is open, so the request must not hold the reload up (nor be cut)."""
    changed = OVERLAY.replace("debug_api:\n    auth: {authenticator: bearertokenauth}",
                              "debug_api:\n    auth: {authenticator: bearertokenauth, required: true}")
    assert changed != OVERLAY
    daemon.write_overlay(changed)
    before = daemon.log().count("configuration reloaded")
    answer = call(daemon, "debug", "/debug/reload", "admin-secret")
    assert answer.status_code == 202, answer.text  # the new config replaced the API that was asked
    wait_until(lambda: daemon.log().count("configuration reloaded") > before, message="the reload applied")
    routes = requests.get(f"http://127.0.0.1:{daemon.ports['debug']}/debug/routes",
                          headers={"Authorization": "Bearer viewer-secret"}, timeout=10)
    assert routes.status_code == 200 and routes.json()["routes"]
    assert requests.get(f"http://127.0.0.1:{daemon.ports['debug']}/debug/routes", timeout=10).status_code == 401

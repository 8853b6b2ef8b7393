"""The debug API behind an authenticator (`extensions::debug_api::auth::authenticator`): oidc
JWTs and bearertokenauth tokens with roles. Reads need `viewer`, actions (reset a breaker)
`operator`: no or a bad token gets 401 with WWW-Authenticate, a role too weak 403."""
from __future__ import annotations

import json
import time

import pytest
import requests

from testkit.harness import BASE_CONFIG, Daemon
from testkit.oidc_tokens import claims, ed_key, rsa_key, tampered, unsigned

RSA, ED = rsa_key(), ed_key()
OVERLAY = """
extensions:
  oidc:
    issuer_url: https://issuer.agentdbg.test
    audience: agentdbg
    roles_claim: roles
    public_keys: %(keys)s
  bearertokenauth:
    tokens:
      - {token: viewer-token, role: viewer, subject: dashboards}
      - {token: operator-token, role: operator, subject: oncall}
      - {token: no-role-token}
  debug_api:
    auth: {authenticator: %(authenticator)s}
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
  extensions: [health_check, debug_api, oidc, bearertokenauth]
  pipelines:
    traces: {receivers: [otlp], exporters: [triggers]}
    events: {receivers: [triggers], processors: [safety], exporters: [file/decisions]}
"""
OPEN_BREAKER = {"breakers": {"database": {"state": "open", "tier": 1, "failures": 0.0, "since": 0.0,
                                          "episodes": ["an-earlier-run"], "cause": {}}},
                "throttles": {}, "canaries": {}, "alerts": {}, "seen": []}


def start(tmp_path, authenticator: str) -> Daemon:
    keys = json.dumps([{"kid": key.kid, "pem": key.public_pem()} for key in (RSA, ED)])
    state = {**OPEN_BREAKER}
    state["breakers"]["database"]["since"] = time.time()
    (tmp_path / "safety.json").write_text(json.dumps(state))
    overlay = OVERLAY % {"keys": keys, "authenticator": authenticator}
    return Daemon(BASE_CONFIG, workdir=tmp_path, overlay=overlay).start()


def call(daemon: Daemon, method: str, path: str, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, f"http://127.0.0.1:{daemon.ports['debug']}/debug/{path}", headers=headers,
                            json={"requested_by": "test", "reason": "role matrix"}, timeout=5)


def jwt_with(*roles: str) -> str:
    return RSA.mint(claims(roles=list(roles)))


# route → the role it needs; the action is last, since it changes the state the reads see
ROUTES = [("GET", "health", "viewer"), ("GET", "pipelines", "viewer"), ("GET", "breakers", "viewer"),
          ("POST", "breakers/database/reset", "operator")]
RANK = {None: 0, "viewer": 1, "operator": 2, "admin": 3}


def test_oidc_roles_decide_route_by_route(tmp_path):
    daemon = start(tmp_path, "oidc")
    try:
        bad = {"no token": None, "expired": RSA.mint(claims(time.time() - 3600, roles=["admin"])),
               "alg none": unsigned(claims(roles=["admin"]), kid=RSA.kid),
               "tampered": tampered(jwt_with("viewer"), roles=["admin"])}
        callers = {None: ED.mint(claims()), "viewer": jwt_with("viewer"), "operator": jwt_with("operator"),
                   "admin": ED.mint(claims(roles=["admin"]))}
        for method, path, needed in ROUTES:
            for case, token in bad.items():
                answer = call(daemon, method, path, token)
                assert answer.status_code == 401, (method, path, case)
                assert answer.headers["WWW-Authenticate"].startswith("Bearer")
            for role, token in callers.items():
                status = call(daemon, method, path, token).status_code
                allowed = RANK[role] >= RANK[needed]
                assert (status == 403) == (not allowed), (method, path, role, status)
                assert status < 400 or not allowed, (method, path, role, status)
    finally:
        daemon.stop()


def test_bearer_tokens_with_roles_guard_the_debug_api(tmp_path):
    daemon = start(tmp_path, "bearertokenauth")
    try:
        assert call(daemon, "GET", "breakers", "wrong").status_code == 401
        assert call(daemon, "GET", "breakers", "no-role-token").status_code == 403
        assert call(daemon, "GET", "breakers", "viewer-token").status_code == 200
        refused = call(daemon, "POST", "breakers/database/reset", "viewer-token")
        assert refused.status_code == 403 and "needs the operator role" in refused.text
        assert call(daemon, "POST", "breakers/database/reset", "operator-token").status_code == 200
        assert "operator-token" not in daemon.log() and "viewer-token" not in daemon.log()
    finally:
        daemon.stop()

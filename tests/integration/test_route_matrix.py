"""The role matrix of every HTTP surface, route by route, on one running daemon
(config/default.yaml: chdb store, explorer, debug API, safety; /metrics and health with auth).

Every surface names the same authenticator (`oidc` with a roles claim, keys from a JWKS this
test serves, or `bearertokenauth` with a role per token). The routes are enumerated from the
apps themselves: the explorer's and the health check's routers (built in this process from the
same code), the debug API's `/debug/routes` (its router plus the components' routes), the
metrics server's router. A route missing from its surface's role table fails the test.

Each route is called with no token, a token of each role and every kind of bad token (expired,
wrong audience, wrong issuer, wrong algorithm, `none`, tampered): a bad token is 401, a role too
weak 403, a strong enough one 2xx. Then the signing key rotates (the JWKS serves a new key only)
once per surface: a token of the new key is accepted there (the daemon fetches the JWKS again
for the unknown key id) and a token of the old key is refused.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from opentelemetry.sdk.resources import Resource

from extensions.explorer.api import ROUTES as EXPLORER_ROUTES
from extensions.explorer.api import STATIC, ExplorerApp
from extensions.explorer.config import ExplorerConfig
from extensions.explorer.store import ChdbReader
from extensions.health_check import HealthCheck, HealthCheckConfig
from pipeline.component import ComponentID, Kind, Settings
from pipeline.host import Host
from pipeline.telemetry.server import ROUTES as METRICS_ROUTES
from pipeline.telemetry.server import MetricsServer
from testkit.harness import ROOT, Daemon, default_config_env, wait_until
from testkit.oidc_tokens import (
    AUDIENCE,
    ISSUER,
    JwksServer,
    claims,
    ec_key,
    hs256_with_public_key,
    rsa_key,
    tampered,
    unsigned,
)
from testkit.otlp_spans import otlp_exporter, sdk_provider

DEFAULT_CONFIG = (ROOT / "config" / "default.yaml").read_text()
SESSION = "sess-matrix"
RANK = {"none": 0, "viewer": 1, "operator": 2, "admin": 3}
OVERLAY = """
extensions:
  oidc:
    issuer_url: %(issuer)s
    audience: %(audience)s
    roles_claim: roles
    jwks_url: %(jwks)s
    jwks_min_refresh_interval: 0s
  bearertokenauth:
    tokens:
      - {token: viewer-secret, role: viewer, subject: dashboards}
      - {token: operator-secret, role: operator, subject: oncall}
      - {token: admin-secret, role: admin, subject: root}
      - {token: norole-secret, subject: agent}
  health_check:
    auth: {authenticator: %(auth)s}
  debug_api:
    auth: {authenticator: %(auth)s}
  explorer:
    auth: {authenticator: %(auth)s}
processors:
  safety:
    state_file: "{dir}/safety.json"
    breakers:
      database: {timeout: 120s}
service:
  extensions: [oidc, bearertokenauth, health_check, debug_api, file_storage, explorer]
  telemetry:
    metrics:
      auth: {authenticator: %(auth)s}
"""


def throttled(role: str) -> str:
    return f"service=planner-{role}"


def stuck_state(now: float) -> dict[str, Any]:
    """A state an earlier run left: breaker database open, planner throttled (so both actions act)."""
    return {"breakers": {"database": {"state": "open", "tier": 1, "failures": 0.0, "since": now,
                                      "episodes": ["earlier"], "cause": {}}},
            # one throttled subject per role that may lift it (a lifted throttle is gone: 404 after)
            "throttles": {throttled(role): {"rate_per_minute": 1000, "burst_per_second": 100, "fallback": None,
                                            "since": now, "episodes": ["daily@1"]} for role in ("operator", "admin")},
            "canaries": {}, "alerts": {}, "seen": []}


# -- the routes, enumerated from the apps -----------------------------------------------------------
def explorer_routes() -> list[tuple[str, str]]:
    app = ExplorerApp(ExplorerConfig(), ChdbReader("")).app()
    found = []
    for resource in app.router.resources():
        pattern = resource.canonical if "{" in resource.canonical or not resource.canonical.startswith("/static") \
            else "/static/{filename}"
        found += [(route.method, pattern) for route in resource if route.method != "HEAD"]
    return found


def health_routes() -> list[tuple[str, str]]:
    config = HealthCheckConfig.model_validate({"auth": {"authenticator": "oidc"}})
    check = HealthCheck(Settings.make(Kind.EXTENSION, ComponentID("health_check")), config)
    app = check.app(Host())
    routes = [(route.method, resource.canonical) for resource in app.router.resources() for route in resource
              if route.method != "HEAD"]
    assert all(check.table.declared(method, path) for method, path in routes), routes
    return routes


def metrics_routes() -> list[tuple[str, str]]:
    app = MetricsServer("127.0.0.1:0").app
    routes = [(route.method, resource.canonical) for resource in app.router.resources() for route in resource
              if route.method != "HEAD"]
    assert all(METRICS_ROUTES.declared(method, path) for method, path in routes), routes
    return routes


def test_every_explorer_route_declares_its_role() -> None:
    undeclared = [route for route in explorer_routes() if not EXPLORER_ROUTES.declared(*route)]
    assert undeclared == [], f"explorer routes without a role in api.py ROUTES: {undeclared}"


# -- the daemon ---------------------------------------------------------------------------------
class Caller:
    """Tokens for every case, for one authenticator."""

    def __init__(self, auth: str, jwks: JwksServer, key: Any) -> None:
        self.auth, self.jwks, self.key = auth, jwks, key

    def good(self) -> dict[str, str | None]:
        """Role name → a token of that role ("none": authenticated, no role)."""
        if self.auth == "bearertokenauth":
            return {"none": "norole-secret", "viewer": "viewer-secret", "operator": "operator-secret",
                    "admin": "admin-secret"}
        mint = self.key.mint
        return {"none": mint(claims()), "viewer": mint(claims(roles=["viewer"])),
                "operator": mint(claims(roles=["operator"])), "admin": mint(claims(roles=["admin"]))}

    def bad(self) -> dict[str, str | None]:
        """Case → a token that must be refused with 401 (all claim the admin role)."""
        if self.auth == "bearertokenauth":
            return {"no token": None, "unknown token": "admin-secret-not", "empty": " "}
        key, admin = self.key, claims(roles=["admin"])
        other = rsa_key(self.key.kid)  # same key id, another private key: the signature cannot verify
        return {"no token": None,
                "expired": key.mint(claims(time.time() - 3600, roles=["admin"])),
                "wrong audience": key.mint(claims(aud="someone-else", roles=["admin"])),
                "wrong issuer": key.mint(claims(iss="https://evil.example", roles=["admin"])),
                "wrong algorithm": hs256_with_public_key(key, admin),
                "none": unsigned(admin, kid=key.kid),
                "tampered": tampered(key.mint(claims(roles=["viewer"])), roles=["admin"]),
                "foreign key": other.mint(admin)}


@pytest.fixture(scope="module", params=["oidc", "bearertokenauth"])
def running(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    workdir = tmp_path_factory.mktemp(f"matrix-{request.param}")
    key = rsa_key("rsa-1")
    with JwksServer([key]) as jwks:
        jwks.issuer = ISSUER  # the discovery document is not used: jwks_url is set
        overlay = OVERLAY % {"issuer": ISSUER, "audience": AUDIENCE, "jwks": jwks.url, "auth": request.param}
        (workdir / "safety.json").write_text(json.dumps(stuck_state(time.time())))
        daemon = Daemon(DEFAULT_CONFIG, workdir=workdir, overlay=overlay)
        daemon.env = default_config_env(daemon, workdir / "data")
        caller = Caller(request.param, jwks, key)
        admin = caller.good()["admin"]
        daemon.start(wait=False)
        try:
            wait_until(lambda: daemon.proc.poll() is None and _status("GET", daemon, "health", "/", admin) == 200,
                       timeout=120, interval=0.2, message=f"health with an admin token ({daemon.log_path})")
            trace_id, span_id = send_session(daemon.ports["grpc"])
            wait_until(lambda: _status("GET", daemon, "explorer", f"/api/sessions/{SESSION}", admin) == 200,
                       timeout=60, interval=0.3, message="the session stored")
            yield daemon, caller, {"trace": trace_id, "span": span_id}
        finally:
            daemon.stop()
            daemon.kill()


def send_session(port: int) -> tuple[str, str]:
    provider, memory = sdk_provider(Resource.create({"service.name": "matrix-agent"}), otlp_exporter("grpc", port))
    with provider.get_tracer("matrix").start_as_current_span("invoke_agent matrix", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": SESSION}):
        pass
    provider.shutdown()
    [span] = memory.get_finished_spans()
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


def _request(method: str, daemon: Daemon, surface: str, path: str, token: str | None,
             body: Any = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers["Idempotency-Key"] = f"matrix {path}"  # an action repeated by a stronger role decides nothing new
    answer = requests.request(method, f"http://127.0.0.1:{daemon.ports[surface]}{path}", headers=headers,
                              json=body, timeout=30, stream=True)
    if answer.headers.get("Content-Type", "").startswith("text/event-stream"):
        answer.close()  # a push channel (/debug/decisions/stream) never ends: status and headers are the check
    else:
        answer.content  # noqa: B018 - read the whole answer, as without stream=True
    return answer


def _status(method: str, daemon: Daemon, surface: str, path: str, token: str | None) -> int:
    try:
        return _request(method, daemon, surface, path, token).status_code
    except requests.RequestException:
        return 0


BODIES = {"/api/query": {"sql": "SELECT count() AS n FROM otel.otel_traces", "format": "json"},
          "/api/forget": {"session": "sess-nobody-has"},
          "/debug/breakers/{name}/reset": {"requested_by": "matrix", "reason": "role matrix"},
          "/debug/throttles/{subject_key:.+}/lift": {"requested_by": "matrix"}}


def concrete(pattern: str, ids: dict[str, str], role: str = "admin") -> str:
    """A path of the pattern that names something that exists (for a caller of `role`)."""
    values = {"{id}": SESSION, "{trace}": ids["trace"], "{span}": ids["span"], "{name}": "database",
              "{subject_key:.+}": throttled(role), "{filename}": sorted(p.name for p in Path(STATIC).iterdir())[0]}
    for placeholder, value in values.items():
        pattern = pattern.replace(placeholder, value)
    assert "{" not in pattern, pattern
    return pattern


def surfaces(daemon: Daemon, admin: str | None) -> list[tuple[str, str, str, str]]:
    """(surface, method, pattern, role) of every route served, each from its app's router."""
    found = [("explorer", method, path, EXPLORER_ROUTES.needs(method, path).value)
             for method, path in explorer_routes()]
    listed = _request("GET", daemon, "debug", "/debug/routes", admin)
    assert listed.status_code == 200, listed.text
    debug = listed.json()["routes"]
    assert [route for route in debug if not route["declared"]] == [], "debug routes without a role in ROUTES"
    found += [("debug", route["method"], route["path"], route["role"]) for route in debug]
    found += [("health", method, path, "viewer") for method, path in health_routes()]
    found += [("metrics", method, path, "viewer") for method, path in metrics_routes()]
    return found


def test_the_role_matrix_route_by_route(running) -> None:
    daemon, caller, ids = running
    good, bad = caller.good(), caller.bad()
    routes = surfaces(daemon, good["admin"])
    served = {(surface, method, path) for surface, method, path, _ in routes}
    # What the issue names: every surface, the admin actions among them.
    for expected in [("debug", "POST", "/debug/reload"), ("debug", "POST", "/debug/breakers/{name}/reset"),
                     ("debug", "GET", "/debug/decisions"), ("explorer", "POST", "/api/query"),
                     ("explorer", "POST", "/api/forget"), ("health", "GET", "/status"),
                     ("metrics", "GET", "/metrics")]:
        assert expected in served, expected
    checked = 0
    for surface, method, pattern, needs in routes:
        path = concrete(pattern, ids)
        body = BODIES.get(pattern)
        for case, token in bad.items():
            answer = _request(method, daemon, surface, path, token, body)
            public = needs == "public"
            assert (answer.status_code < 300) if public else answer.status_code == 401, \
                (surface, method, path, case, answer.status_code, answer.text[:200])
            if not public:
                assert answer.headers["WWW-Authenticate"].startswith("Bearer"), (surface, path, case)
        for role, token in good.items():  # weakest first: an action is done once, by the first allowed
            answer = _request(method, daemon, surface, concrete(pattern, ids, role), token, body)
            allowed = needs == "public" or RANK[role] >= RANK[needs]
            want = "2xx" if allowed else "403"
            got = "2xx" if answer.status_code < 300 else str(answer.status_code)
            assert got == want, (surface, method, path, role, answer.status_code, answer.text[:300])
            checked += 1
    assert checked == len(routes) * len(good)


def test_key_rotation_on_one_route_of_each_surface(running) -> None:
    daemon, caller, _ = running
    if caller.auth != "oidc":
        pytest.skip("key rotation is the oidc authenticator's")
    old = caller.key
    old_token = old.mint(claims(roles=["admin"]))
    for number, (surface, path) in enumerate([("debug", "/debug/breakers"), ("explorer", "/api/sessions"),
                                              ("health", "/status"), ("metrics", "/metrics")]):
        assert _status("GET", daemon, surface, path, old_token) == 200, surface
        new = ec_key(f"ec-rotated-{number}")
        caller.jwks.keys = [new]  # the issuer rotates: the old key leaves the JWKS
        fetched = caller.jwks.requests
        assert _status("GET", daemon, surface, path, new.mint(claims(roles=["viewer"]))) == 200, surface
        assert caller.jwks.requests > fetched  # the unknown key id made the daemon fetch the JWKS again
        assert _status("GET", daemon, surface, path, old_token) == 401, surface
        old, old_token = new, new.mint(claims(roles=["admin"]))
    caller.key = old

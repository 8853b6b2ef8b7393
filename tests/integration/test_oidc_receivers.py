"""The oidc authenticator on the daemon's OTLP receivers, HTTP and gRPC, with real JWTs.

The issuer is a small HTTP server on 127.0.0.1 serving a discovery document and a JWKS of an
RSA, an EC P-256 and an Ed25519 key. Every case is one export request whose span is named
after the case: a refused one must get 401 (with WWW-Authenticate) or UNAUTHENTICATED and
never reach the file exporter; an accepted one must arrive there. Then the issuer rotates
its keys and the daemon follows.
"""
from __future__ import annotations

import os
import time

import grpc
import pytest
import requests
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from testkit.harness import BASE_CONFIG, Daemon, wait_until
from testkit.oidc_tokens import (JwksServer, claims, ec_key, ed_key, hs256_with_public_key, rsa_key, tampered,
                               unsigned, with_header)
from testkit.otlp_spans import read_json_lines

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
RSA, EC, ED = rsa_key(), ec_key(), ed_key()

OVERLAY = """
extensions:
  oidc:
    issuer_url: "{issuer}"
    audience: agentdbg
    roles_claim: roles
    {keys}
    jwks_min_refresh_interval: 0s
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "{{grpc}}", auth: {{authenticator: oidc}}}}
      http: {{endpoint: "{{http}}", auth: {{authenticator: oidc}}}}
exporters:
  file: {{path: "{{dir}}/out.jsonl", flush_interval: 50ms}}
service:
  extensions: [health_check, debug_api, oidc]
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
"""


def request_named(name: str) -> bytes:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.name = name
    span.trace_id = os.urandom(16)
    span.span_id = os.urandom(8)
    span.start_time_unix_nano = time.time_ns()
    span.end_time_unix_nano = span.start_time_unix_nano + 1000
    return request.SerializeToString()


def names_out(daemon: Daemon) -> list[str]:
    return [span.name for request in read_json_lines(daemon.dir / "out.jsonl")
            for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]


class Sender:
    """One export per call over `transport`; answers (status, reason text, WWW-Authenticate)."""

    def __init__(self, daemon: Daemon, transport: str) -> None:
        self.daemon, self.transport = daemon, transport
        self.channel = grpc.insecure_channel(f"127.0.0.1:{daemon.ports['grpc']}")

    def send(self, name: str, token: str | None) -> tuple[str, str, str]:
        headers = {} if token is None else {"authorization": f"Bearer {token}"}
        if self.transport == "http":
            answer = requests.post(f"http://127.0.0.1:{self.daemon.ports['http']}/v1/traces", data=request_named(name),
                                   headers={"Content-Type": "application/x-protobuf", **headers}, timeout=10)
            message = status_pb2.Status.FromString(answer.content).message if answer.status_code != 200 else ""
            return str(answer.status_code), message, answer.headers.get("WWW-Authenticate", "")
        try:
            self.channel.unary_unary(TRACES)(request_named(name), metadata=tuple(headers.items()), timeout=10)
        except grpc.RpcError as error:
            return error.code().name, error.details(), ""
        return "OK", "", ""


def refused(transport: str) -> str:
    return "401" if transport == "http" else "UNAUTHENTICATED"


def accepted(transport: str) -> str:
    return "200" if transport == "http" else "OK"


@pytest.fixture(scope="module")
def issuer():
    with JwksServer([RSA, EC, ED]) as server:
        yield server


@pytest.fixture(scope="module")
def daemon(issuer, tmp_path_factory):
    overlay = OVERLAY.format(issuer=issuer.issuer, keys="")  # no key source: discovery from issuer_url
    with Daemon(BASE_CONFIG, workdir=tmp_path_factory.mktemp("oidc"), overlay=overlay) as running:
        yield running


def bad_tokens(iss: str) -> dict[str, tuple[str | None, str]]:
    """case → (token, the reason the daemon must give)."""
    now = time.time()
    return {
        "no token": (None, "no credentials in the request"),
        "expired": (RSA.mint(claims(now - 3600, iss=iss)), "the token has expired"),
        "not yet valid": (EC.mint(claims(now, iss=iss, nbf=int(now) + 600)), "the token is not valid yet (nbf)"),
        "wrong audience": (ED.mint(claims(now, iss=iss, aud="another-service")),
                           "the token is not meant for this audience"),
        "wrong issuer": (RSA.mint(claims(now, iss="https://evil.test")), "the token comes from another issuer"),
        "HS256 signed with the public key": (hs256_with_public_key(RSA, claims(now, iss=iss)),
                                             "the token's algorithm HS256 is not allowed"),
        "alg none": (unsigned(claims(now, iss=iss)), "the token's algorithm none is not allowed"),
        "tampered": (tampered(RSA.mint(claims(now, iss=iss)), sub="admin"), "the token's signature does not verify"),
        # PyJWT's own refusal of this header once escaped as a 500 / UNKNOWN
        "kid not a string": (with_header(RSA.mint(claims(now, iss=iss)), kid=7), "the token is not a well-formed JWT"),
    }


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_each_bad_token_is_refused_and_its_span_never_stored(daemon, issuer, transport):
    sender = Sender(daemon, transport)
    cases = bad_tokens(issuer.issuer)
    before = daemon.metric("agentdbg_receiver_rejected_requests_total", reason="unauthenticated",
                           transport=transport)
    for case, (token, reason) in cases.items():
        status, message, challenge = sender.send(f"{transport}: {case}", token)
        assert status == refused(transport), case
        assert reason in message, case
        if transport == "http":
            assert challenge.startswith('Bearer realm="agentdbg"'), case
            assert ("error=" in challenge) == (token is not None), case
    barrier = f"{transport}: barrier"
    assert sender.send(barrier, RSA.mint(claims(iss=issuer.issuer)))[0] == accepted(transport)
    wait_until(lambda: barrier in names_out(daemon), message="the barrier span stored")
    assert not [name for name in names_out(daemon) if name.startswith(transport) and name != barrier]
    assert daemon.metric("agentdbg_receiver_rejected_requests_total", reason="unauthenticated",
                         transport=transport) - before == len(cases)
    log = daemon.log()
    assert not [case for case, (token, _) in cases.items() if token and token in log]


@pytest.mark.parametrize("transport", ["http", "grpc"])
@pytest.mark.parametrize("key", [RSA, EC, ED], ids=["RS256", "ES256", "EdDSA"])
def test_a_valid_token_of_each_algorithm_is_accepted_and_its_span_stored(daemon, issuer, transport, key):
    name = f"valid {key.alg} over {transport}"
    token = key.mint(claims(iss=issuer.issuer, roles=["viewer"]))
    assert Sender(daemon, transport).send(name, token)[0] == accepted(transport)
    wait_until(lambda: name in names_out(daemon), message=f"{name} stored")
    assert token not in daemon.log()


def test_rotation_an_unknown_kid_is_refused_until_the_issuer_publishes_it_and_retired_keys_stop_working(tmp_path):
    old, new = rsa_key("2026-01"), ed_key("2026-02")
    with JwksServer([old]) as issuer:
        overlay = OVERLAY.format(issuer=issuer.issuer, keys=f'jwks_url: "{issuer.url}"')
        with Daemon(BASE_CONFIG, workdir=tmp_path, overlay=overlay) as daemon:
            for transport in ("http", "grpc"):
                sender = Sender(daemon, transport)
                assert sender.send(f"{transport}: old key", old.mint(claims(iss=issuer.issuer)))[0] == \
                    accepted(transport)
            early = new.mint(claims(iss=issuer.issuer))
            status, message, _ = Sender(daemon, "http").send("http: new key before it is published", early)
            assert status == "401" and "no current key" in message
            issuer.keys = [new]  # the issuer rotates: publishes the new key and retires the old one
            for transport in ("http", "grpc"):
                sender = Sender(daemon, transport)
                assert sender.send(f"{transport}: new key", early)[0] == accepted(transport)
                status, message, _ = sender.send(f"{transport}: retired key", old.mint(claims(iss=issuer.issuer)))
                assert status == refused(transport) and "no current key" in message
            wanted = ["http: old key", "grpc: old key", "http: new key", "grpc: new key"]
            wait_until(lambda: sorted(names_out(daemon)) == sorted(wanted), message="the accepted spans stored")

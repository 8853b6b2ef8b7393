"""The oidc authenticator on a paused clock (token times, the refetch rate limit, and the
periodic refresh's sleep), with real keys and real PyJWT tokens; keys come from `public_keys`,
a `jwks_file` the test rewrites, or a JWKS served on 127.0.0.1. Claim → role mapping;
bearertokenauth's principals."""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from extensions.bearertokenauth import BearerTokenAuth, BearerTokenAuthConfig
from extensions.oidc import OidcAuth, OidcConfig, parse_jwks, role_from_claims
from pipeline.auth import MISSING, PRINCIPAL, Principal, Role, Unauthenticated, http_middleware
from pipeline.component import ComponentID, Kind, Settings
from testkit.oidc_tokens import (AUDIENCE, ISSUER, JwksServer, bearer, claims, ec_key, ed_key, hs256_with_public_key,
                               rsa_key, tampered, tls_for_127_0_0_1, unsigned)

NOW = 1_800_000_000.0
RSA, EC, ED = rsa_key(), ec_key(), ed_key()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def make_oidc(clock: Clock, **config) -> OidcAuth:
    settings = Settings.make(Kind.EXTENSION, ComponentID("oidc"))
    auth = OidcAuth(settings, OidcConfig.model_validate({"issuer_url": ISSUER, "audience": AUDIENCE, **config}))
    auth.clock = clock
    auth.monotonic = clock
    return auth


def static_keys(*keys) -> list[dict]:
    return [{"kid": key.kid, "pem": key.public_pem()} for key in keys]


async def reason_of(auth: OidcAuth, token: str) -> str:
    with pytest.raises(Unauthenticated) as error:
        await auth.authenticate(bearer(token))
    assert token not in str(error.value) and token not in error.value.challenge
    return error.value.reason


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def oidc(clock):
    auth = make_oidc(clock, public_keys=static_keys(RSA, EC, ED), roles_claim="roles")
    await auth.start()
    yield auth
    await auth.shutdown()


@pytest.mark.parametrize("key", [RSA, EC, ED], ids=["RS256", "ES256", "EdDSA"])
async def test_a_valid_token_of_each_algorithm_gives_its_subject_and_role(oidc, key):
    principal = await oidc.authenticate(bearer(key.mint(claims(NOW, roles=["operator"]))))
    assert principal == Principal("agent-7", Role.OPERATOR, method="oidc")


async def test_expiry_and_not_before_are_checked_with_the_leeway(oidc, clock):
    token = RSA.mint(claims(NOW, exp=int(NOW) + 60, nbf=int(NOW) - 10))
    clock.now = NOW + 60 + 29  # 29 s past exp: inside the default 30 s leeway
    assert (await oidc.authenticate(bearer(token))).subject == "agent-7"
    clock.now = NOW + 60 + 30  # the token is in the cache of verified tokens now: it expires all the same
    assert await reason_of(oidc, token) == "the token has expired"
    early = RSA.mint(claims(NOW, nbf=int(NOW) + 31))
    clock.now = NOW
    assert await reason_of(oidc, early) == "the token is not valid yet (nbf)"
    clock.now = NOW + 1
    assert (await oidc.authenticate(bearer(early))).subject == "agent-7"


@pytest.mark.parametrize("case, expected", [
    ("wrong audience", "the token is not meant for this audience"),
    ("wrong issuer", "the token comes from another issuer"),
    ("no exp", "the token has no exp claim"),
    ("no sub", "the token has no sub claim"),
    ("HS256 with the public key", "the token's algorithm HS256 is not allowed"),
    ("alg none", "the token's algorithm none is not allowed"),
    ("tampered", "the token's signature does not verify"),
    ("signed by another key with the same kid", "the token's signature does not verify"),
    ("ES256 header on the RSA kid", "no current key of the issuer matches the token's key id and algorithm"),
    ("not a JWT", "the token is not a well-formed JWT"),
    ("exp not a number", "the token's exp claim is not a number"),
    ("exp NaN", "the token's exp claim is not a number"),
])
async def test_each_bad_token_is_refused_with_its_reason(oidc, case, expected):
    tokens = {
        "wrong audience": lambda: RSA.mint(claims(NOW, aud="someone-else")),
        "wrong issuer": lambda: RSA.mint(claims(NOW, iss="https://evil.test")),
        "no exp": lambda: RSA.mint(claims(NOW, exp=None)),
        "no sub": lambda: RSA.mint(claims(NOW, sub=None)),
        "HS256 with the public key": lambda: hs256_with_public_key(RSA, claims(NOW)),
        "alg none": lambda: unsigned(claims(NOW)),
        "tampered": lambda: tampered(RSA.mint(claims(NOW, roles=["viewer"])), roles=["admin"]),
        "signed by another key with the same kid": lambda: rsa_key(RSA.kid).mint(claims(NOW)),
        "ES256 header on the RSA kid": lambda: ec_key(RSA.kid).mint(claims(NOW)),
        "not a JWT": lambda: "not-a-jwt",
        "exp not a number": lambda: RSA.sign_any(claims(NOW, exp="tomorrow")),
        "exp NaN": lambda: RSA.sign_any(claims(NOW, exp=float("nan"))),
    }
    assert await reason_of(oidc, tokens[case]()) == expected


async def test_missing_or_other_scheme_credentials(oidc):
    with pytest.raises(Unauthenticated) as error:
        await oidc.authenticate({})
    assert error.value.reason == MISSING and error.value.challenge == 'Bearer realm="agentdbg"'
    with pytest.raises(Unauthenticated) as error:
        await oidc.authenticate({"authorization": "Basic dXNlcjpwYXNz"})
    assert "does not carry Bearer credentials" in error.value.reason
    assert 'error="invalid_token"' in error.value.challenge


def test_config_refuses_none_and_shared_secret_algorithms():
    for bad in ("none", "HS256", "hs512"):
        with pytest.raises(ValidationError, match="is not allowed"):
            OidcConfig.model_validate({"issuer_url": ISSUER, "audience": AUDIENCE, "algorithms": ["RS256", bad]})
    with pytest.raises(ValidationError, match="not a PEM public key"):
        OidcConfig.model_validate({"issuer_url": ISSUER, "audience": AUDIENCE, "public_keys": [{"pem": "junk"}]})
    with pytest.raises(ValidationError, match="issuer_url"):
        OidcConfig.model_validate({"audience": AUDIENCE})


async def test_an_algorithm_left_out_of_algorithms_is_refused(clock):
    auth = make_oidc(clock, public_keys=static_keys(RSA, EC), algorithms=["ES256"])
    await auth.start()
    assert await reason_of(auth, RSA.mint(claims(NOW))) == "the token's algorithm RS256 is not allowed"
    assert (await auth.authenticate(bearer(EC.mint(claims(NOW))))).subject == "agent-7"


def test_jwks_parsing_keeps_only_signing_keys_of_allowed_algorithms():
    document = {"keys": [RSA.jwk(), EC.jwk(), {**ED.jwk(), "use": "enc"},
                         {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
                         {"kty": "RSA", "kid": "broken"}, "junk"]}
    keys, skipped = parse_jwks(document, ["RS256", "ES256", "EdDSA"])
    assert [key.kid for key in keys] == [RSA.kid, EC.kid] and skipped == 4
    assert keys[0].algorithms == {"RS256"}  # the JWK names its alg: that one only
    with pytest.raises(ValueError, match="not a JWKS"):
        parse_jwks({"no": "keys"}, ["RS256"])


def write_jwks(path: Path, *keys) -> None:
    path.write_text(json.dumps({"keys": [key.jwk() for key in keys]}))


async def test_an_unknown_kid_reloads_the_key_set_at_most_once_per_min_interval(tmp_path, clock):
    jwks = tmp_path / "jwks.json"
    write_jwks(jwks, RSA)
    auth = make_oidc(clock, jwks_file=str(jwks), jwks_min_refresh_interval="10s")
    await auth.start()
    try:
        assert auth.fetches == 1
        before = RSA.mint(claims(NOW))
        assert (await auth.authenticate(bearer(before))).subject == "agent-7"  # verified, and kept
        rotated = rsa_key("rsa-2")
        write_jwks(jwks, rotated)  # the issuer rotates; the old key is gone
        token = rotated.mint(claims(NOW))
        expected = "no current key of the issuer matches the token's key id and algorithm"
        clock.now = NOW + 5  # within 10 s of the last load: no reload
        assert await reason_of(auth, token) == expected
        assert auth.fetches == 1
        clock.now = NOW + 10
        assert (await auth.authenticate(bearer(token))).subject == "agent-7"
        assert auth.fetches == 2
        assert await reason_of(auth, RSA.mint(claims(NOW + 10))) == expected  # the retired key is refused
        assert await reason_of(auth, before) == expected  # even for a token verified with it before
        for kid in ("made-up-1", "made-up-2", "made-up-3"):  # made-up kids cost no reload
            await reason_of(auth, rsa_key(kid).mint(claims(NOW + 10)))
        assert auth.fetches == 2
    finally:
        await auth.shutdown()


async def test_a_static_key_without_kid_verifies_tokens_with_any_kid(clock):
    auth = make_oidc(clock, public_keys=[{"pem": ED.public_pem()}])
    await auth.start()
    assert (await auth.authenticate(bearer(ED.mint(claims(NOW))))).subject == "agent-7"


@pytest.mark.parametrize("token_claims, config, expected", [
    ({"roles": ["viewer"]}, {"roles_claim": "roles"}, Role.VIEWER),
    ({"roles": ["viewer", "admin", "operator"]}, {"roles_claim": "roles"}, Role.ADMIN),
    ({"roles": "viewer operator"}, {"roles_claim": "roles"}, Role.OPERATOR),
    ({"roles": ["superuser"]}, {"roles_claim": "roles"}, None),
    ({"roles": ["superuser"]}, {"roles_claim": "roles", "default_role": Role.VIEWER}, Role.VIEWER),
    ({"realm_access": {"roles": ["debug-admins"]}},
     {"roles_claim": "realm_access.roles", "role_mapping": {"debug-admins": Role.ADMIN}}, Role.ADMIN),
    ({"https://agentdbg.test/roles": ["operator"]}, {"roles_claim": "https://agentdbg.test/roles"}, Role.OPERATOR),
    ({"groups": ["sre", "dev"]}, {"groups_claim": "groups", "role_mapping": {"sre": Role.OPERATOR}}, Role.OPERATOR),
    ({"groups": ["admin"]}, {"groups_claim": "groups"}, None),  # a group counts only through role_mapping
    ({"groups": ["dev"], "roles": ["viewer"]},
     {"roles_claim": "roles", "groups_claim": "groups", "role_mapping": {"dev": Role.ADMIN}}, Role.ADMIN),
    ({"roles": [1, None, {"admin": True}]}, {"roles_claim": "roles"}, None),
    ({}, {"roles_claim": "roles", "groups_claim": "groups"}, None),
])
def test_claims_map_to_the_strongest_role(token_claims, config, expected):
    assert role_from_claims(token_claims, **config) is expected


def test_role_order_and_principal_rights():
    assert Role.ADMIN.includes(Role.OPERATOR) and Role.OPERATOR.includes(Role.VIEWER)
    assert not Role.VIEWER.includes(Role.OPERATOR)
    operator = Principal("oncall", Role.OPERATOR)
    assert operator.roles == {Role.VIEWER, Role.OPERATOR}
    assert operator.allows(Role.VIEWER) and operator.allows(None) and not operator.allows(Role.ADMIN)
    assert not Principal("agent").allows(Role.VIEWER) and Principal("agent").allows(None)


async def test_bearer_tokens_carry_their_role_and_subject_and_keep_the_simple_form(tmp_path):
    (tmp_path / "tokens.txt").write_text("file-token\n")
    config = BearerTokenAuthConfig.model_validate({
        "token": "plain", "role": "viewer", "filename": str(tmp_path / "tokens.txt"),
        "tokens": ["listed", {"token": "ops-token", "role": "operator", "subject": "oncall"}]})
    auth = BearerTokenAuth(Settings.make(Kind.EXTENSION, ComponentID("bearertokenauth")), config)
    assert await auth.authenticate(bearer("ops-token")) == Principal("oncall", Role.OPERATOR, "bearertokenauth")
    assert await auth.authenticate(bearer("plain")) == Principal("bearertokenauth[token]", Role.VIEWER,
                                                                 "bearertokenauth")
    assert (await auth.authenticate(bearer("listed"))).subject == "bearertokenauth[tokens.0]"
    assert (await auth.authenticate({"authorization": "Bearer file-token"})).subject == "bearertokenauth[file:1]"
    with pytest.raises(Unauthenticated) as error:
        await auth.authenticate(bearer("wrong"))
    assert "wrong" not in str(error.value)
    # An empty token (an unset ${env:...}) validates but refuses to start, naming the entry.
    empty = BearerTokenAuthConfig.model_validate({"tokens": ["ok", {"token": "", "role": "admin"}]})
    with pytest.raises(ValueError, match="extensions::bearertokenauth::tokens::1: the token is empty"):
        await BearerTokenAuth(Settings.make(Kind.EXTENSION, ComponentID("bearertokenauth")), empty).start()


class Sleeps:
    """The periodic refresh's sleep: records what it was asked for and returns when woken."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self._wake = asyncio.Queue()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await self._wake.get()

    def wake(self) -> None:
        self._wake.put_nowait(None)


async def settle(predicate, rounds: int = 500) -> None:
    """Let the event loop run (the refresh task, a fetch from 127.0.0.1) until `predicate()`."""
    for _ in range(rounds):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the refresh did not happen")


async def started(auth: OidcAuth, sleeps: Sleeps) -> OidcAuth:
    auth.sleep = sleeps
    await auth.start()
    await settle(lambda: sleeps.asked)
    return auth


async def test_the_periodic_refresh_picks_up_a_rotated_key_before_any_token_needs_it(tmp_path, clock):
    jwks, sleeps = tmp_path / "jwks.json", Sleeps()
    write_jwks(jwks, RSA)
    auth = await started(make_oidc(clock, jwks_file=str(jwks), jwks_refresh_interval="10m"), sleeps)
    try:
        rotated = ec_key("ec-2")
        write_jwks(jwks, RSA, rotated)
        os.utime(jwks, (NOW + 1, NOW + 1))  # a new mtime even on a coarse file system clock
        sleeps.wake()
        await settle(lambda: auth.fetches == 2)
        assert auth.keys.kids == {RSA.kid, rotated.kid}
        assert sleeps.asked[:2] == [600.0, 600.0]
    finally:
        await auth.shutdown()


async def test_a_failed_fetch_keeps_the_keys_it_had(clock):
    with JwksServer([RSA]) as issuer:
        auth = await started(make_oidc(clock, jwks_url=issuer.url), Sleeps())
        try:
            token = RSA.mint(claims(NOW))
            for failure in ({"status": 503}, {"padding": 2 * 1024 * 1024}):
                issuer.status, issuer.padding = failure.get("status", 200), failure.get("padding", 0)
                await auth.refresh()
                assert auth.keys.kids == {RSA.kid}, failure
                assert (await auth.authenticate(bearer(token))).subject == "agent-7"
        finally:
            await auth.shutdown()


async def test_until_the_first_fetch_succeeds_tokens_are_refused_and_the_retry_comes_sooner(clock):
    with JwksServer([RSA]) as issuer:
        issuer.status = 503
        sleeps = Sleeps()
        auth = await started(make_oidc(clock, jwks_url=issuer.url, jwks_min_refresh_interval="30s",
                                       jwks_refresh_interval="15m"), sleeps)
        try:
            token = RSA.mint(claims(NOW))
            assert await reason_of(auth, token) == \
                "no current key of the issuer matches the token's key id and algorithm"
            assert sleeps.asked == [30.0]
            issuer.status = 200
            sleeps.wake()
            await settle(lambda: len(sleeps.asked) == 2)
            assert sleeps.asked == [30.0, 900.0]
            assert (await auth.authenticate(bearer(token))).subject == "agent-7"
        finally:
            await auth.shutdown()


async def test_requests_waiting_on_an_unknown_kid_share_one_fetch(clock):
    with JwksServer([RSA]) as issuer:
        auth = await started(make_oidc(clock, jwks_url=issuer.url, jwks_min_refresh_interval="1s"), Sleeps())
        try:
            fetched = issuer.requests
            rotated = ed_key("ed-2")
            issuer.keys = [RSA, rotated]
            clock.now = NOW + 1
            tokens = [rotated.mint(claims(NOW, sub=f"agent-{n}")) for n in range(5)]
            principals = await asyncio.gather(*(auth.authenticate(bearer(token)) for token in tokens))
            assert [p.subject for p in principals] == [f"agent-{n}" for n in range(5)]
            assert issuer.requests - fetched == 1
        finally:
            await auth.shutdown()


async def test_the_http_middleware_answers_401_403_or_lets_the_role_through(oidc):
    roles = {"/read": Role.VIEWER, "/reset": Role.OPERATOR, "/sql": Role.ADMIN}
    app = web.Application(middlewares=[http_middleware(lambda: oidc, lambda request: roles[request.path])])

    async def whoami(request: web.Request) -> web.Response:
        return web.json_response({"subject": request[PRINCIPAL].subject})

    for path in roles:
        app.router.add_get(path, whoami)
    async with TestClient(TestServer(app)) as client:
        answer = await client.get("/read")
        assert answer.status == 401 and answer.headers["WWW-Authenticate"] == 'Bearer realm="agentdbg"'
        operator = bearer(RSA.mint(claims(NOW, roles=["operator"])))
        got = {path: (await client.get(path, headers=operator)).status for path in roles}
        assert got == {"/read": 200, "/reset": 200, "/sql": 403}
        forbidden = await client.get("/sql", headers=operator)
        assert "needs the admin role; the caller has operator" in await forbidden.text()
        assert (await (await client.get("/read", headers=operator)).json()) == {"subject": "agent-7"}
        expired = await client.get("/read", headers=bearer(RSA.mint(claims(NOW - 3600))))
        assert expired.status == 401 and 'error_description="the token has expired"' in \
            expired.headers["WWW-Authenticate"]


async def test_an_issuer_over_tls_is_trusted_through_issuer_ca_path_only(tmp_path, clock):
    tls, cert = tls_for_127_0_0_1(tmp_path)
    with JwksServer([ED], tls=tls) as issuer:
        token = ED.mint(claims(NOW, iss=issuer.issuer))
        for config, accepted in (({}, False), ({"issuer_ca_path": str(cert)}, True)):
            auth = await started(make_oidc(clock, issuer_url=issuer.issuer, **config), Sleeps())  # discovery
            try:
                if accepted:
                    assert (await auth.authenticate(bearer(token))).subject == "agent-7"
                else:  # the certificate is not one the system trusts: no keys, every token refused
                    assert not auth.keys.keys
                    await reason_of(auth, token)
            finally:
                await auth.shutdown()

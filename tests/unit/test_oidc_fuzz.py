"""Any token, well-formed or not, is either accepted or refused with `Unauthenticated`: no other
exception escapes the oidc authenticator (the receivers would answer it 500 / UNKNOWN)."""
from __future__ import annotations

import asyncio
import base64
import json

from hypothesis import example, given, strategies as st

from extensions.oidc import OidcAuth, OidcConfig
from pipeline.auth import Unauthenticated
from pipeline.component import ComponentID, Kind, Settings
from testkit.oidc_tokens import AUDIENCE, ISSUER, claims, ed_key, rsa_key

RSA, ED = rsa_key(), ed_key()
AUTH = OidcAuth(Settings.make(Kind.EXTENSION, ComponentID("oidc")), OidcConfig.model_validate({
    "issuer_url": ISSUER, "audience": AUDIENCE, "roles_claim": "roles", "groups_claim": "org.groups",
    "public_keys": [{"kid": RSA.kid, "pem": RSA.public_pem()}, {"pem": ED.public_pem()}]}))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8)
payloads = st.dictionaries(st.sampled_from(["iss", "aud", "sub", "exp", "nbf", "iat", "roles", "org"]), json_values)
headers = st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "jku", "b64"]), json_values)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _authenticate(token: str) -> None:
    try:
        asyncio.run(AUTH.authenticate({"authorization": f"Bearer {token}"}))
    except Unauthenticated:
        pass


@given(payloads, headers, st.binary(max_size=16))
@example({}, {"kid": None, "alg": "RS256"}, b"")  # PyJWT's InvalidTokenError for a non-string kid once escaped
def test_forged_tokens_are_refused_with_a_reason(payload, header, signature):
    body = json.dumps({**claims(), **payload}, default=str).encode()
    _authenticate(f"{_b64(json.dumps(header).encode())}.{_b64(body)}.{_b64(signature)}")


@given(payloads, st.booleans())
def test_signed_tokens_with_odd_claims_are_accepted_or_refused_with_a_reason(payload, ed):
    _authenticate((ED if ed else RSA).sign_any({**claims(), **payload}))

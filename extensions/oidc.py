"""`oidc`: accept requests that carry a JWT from an OpenID Connect issuer, with roles from its claims.

The anchor is otelcol contrib's `oidc` auth extension and its keys: `issuer_url` (the
`iss` every token must carry), `audience` (must be in `aud`), `issuer_ca_path` (CA for TLS
to the issuer), `attribute` (the header, default `authorization`, holding `Bearer <jwt>`),
`username_claim` (the subject, default `sub`) and `groups_claim`. Added here:

- Keys from `jwks_url`, from a JWKS document in `jwks_file`, from PEM `public_keys`, or, when
  none of them is set, from the issuer's discovery document
  (`<issuer_url>/.well-known/openid-configuration`, its `jwks_uri`).
- Signatures: only the asymmetric algorithms in `algorithms` (default RS256, ES256, EdDSA).
  `none` and the HMAC algorithms are refused by the config: a public key must never be
  used as a shared secret. A key verifies only the algorithms its type allows (an RSA key
  never an EC or an HMAC signature), and only its JWK `alg` when it names one.
- Times: `exp` is required; `exp`, `nbf` and `iat` are checked with `leeway` seconds of
  clock skew.
- Key rotation: the JWKS is fetched again every `jwks_refresh_interval`, and at once when a
  token names a key id (`kid`) the extension does not know, at most once per
  `jwks_min_refresh_interval` (so tokens with made-up key ids cannot turn the daemon into a
  flood of requests to the issuer). A failed fetch keeps the keys it had; a key that left
  the JWKS is no longer accepted. Fetches run in the background or, for an unknown key id,
  once for all the requests waiting on it; a request with a known key never waits on the
  network. Until the first fetch succeeds every token is refused (401), and a retry comes
  after `jwks_min_refresh_interval`.
- Roles: the values of `roles_claim` that are role names (`viewer`, `operator`, `admin`),
  and the values of `roles_claim` or `groups_claim` that `role_mapping` maps to a role;
  the strongest one wins, `default_role` when none does. A claim name is looked up as it
  is first, then as a dotted path (`realm_access.roles`).
- Cost: verifying a token (PyJWT's parsing and the signature) takes about half a
  millisecond, so the last `cache_size` verified tokens are kept: an agent sends the same
  token with every export. A kept token's times are checked again on every request, and the
  cache is emptied whenever the key set is loaded again.
- The token's own pointers to keys (`jku`, `x5u`, `jwk` headers) are never followed.

What it promises: a request is let through only with a token whose signature verifies with
a current key of the issuer and whose issuer, audience and times are right. Everything else
raises `Unauthenticated` with a reason that names what is wrong; no token and no key
material is ever logged.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Literal, Mapping

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import Field, field_validator, model_validator

from pipeline.auth import Principal, Role, Unauthenticated, credentials, highest
from pipeline.component import Component, Factory, Kind, Settings, StrictConfig
from pipeline.config.units import Duration
from pipeline.host import Host

Algorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
MAX_JWKS_BYTES = 1024 * 1024  # a key set is a few KiB; a larger answer is not one
DISCOVERY_PATH = "/.well-known/openid-configuration"
_PRINTABLE_ALG = re.compile(r"^[A-Za-z0-9]{1,16}$")


class StaticKey(StrictConfig):
    kid: str = ""  # matched against the token's `kid`; a key without one is tried for tokens without one
    pem: str = ""
    pem_file: str = ""

    @model_validator(mode="after")
    def _one_source(self) -> "StaticKey":
        if bool(self.pem) == bool(self.pem_file):
            raise ValueError("set exactly one of pem and pem_file")
        if self.pem_file and not Path(self.pem_file).is_file():
            raise ValueError(f"pem_file {self.pem_file!r} does not exist")
        load_public_pem(self.text())
        return self

    def text(self) -> str:
        return self.pem or Path(self.pem_file).read_text()


class OidcConfig(StrictConfig):
    issuer_url: str
    audience: str
    issuer_ca_path: str = ""
    attribute: str = "authorization"
    username_claim: str = "sub"
    groups_claim: str = ""
    roles_claim: str = ""
    role_mapping: dict[str, Role] = Field(default_factory=dict)
    default_role: Role | None = None
    jwks_url: str = ""
    jwks_file: str = ""
    public_keys: list[StaticKey] = Field(default_factory=list)
    algorithms: list[Algorithm] = Field(default_factory=lambda: list[Algorithm](["RS256", "ES256", "EdDSA"]))
    leeway: Duration = 30.0
    jwks_refresh_interval: Duration = 900.0
    jwks_min_refresh_interval: Duration = 30.0
    timeout: Duration = 5.0
    cache_size: int = Field(default=1024, ge=0)  # verified tokens kept (0: verify every request)

    @field_validator("algorithms", mode="before")
    @classmethod
    def _no_shared_secrets(cls, value: Any) -> Any:
        for name in value if isinstance(value, list) else []:
            if isinstance(name, str) and (name.lower() == "none" or name.upper().startswith("HS")):
                raise ValueError(f"{name} is not allowed: tokens must be signed with a private key "
                                 "(none is unsigned; an HMAC algorithm would use the public key as a shared secret)")
        return value

    @model_validator(mode="after")
    def _checks(self) -> "OidcConfig":
        if not self.algorithms:
            raise ValueError("algorithms is empty: list at least one of RS256, ES256, EdDSA")
        if self.issuer_ca_path and not Path(self.issuer_ca_path).is_file():
            raise ValueError(f"issuer_ca_path {self.issuer_ca_path!r} does not exist")
        if self.jwks_file and not Path(self.jwks_file).is_file():
            raise ValueError(f"jwks_file {self.jwks_file!r} does not exist")
        return self

    @property
    def discovers(self) -> bool:
        """No key source is configured: keys come from the issuer's discovery document."""
        return not (self.jwks_url or self.jwks_file or self.public_keys)


# -- keys ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyKey:
    kid: str | None
    key: Any  # a cryptography public key
    algorithms: frozenset[str]  # what this key may verify: its type's algorithms ∩ allowed ∩ its JWK alg


def key_algorithms(key: Any) -> frozenset[str]:
    """The signature algorithms a public key of this type can verify (none for anything else)."""
    if isinstance(key, rsa.RSAPublicKey):
        return frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
    if isinstance(key, ec.EllipticCurvePublicKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        return frozenset({by_curve[key.curve.name]}) if key.curve.name in by_curve else frozenset()
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return frozenset({"EdDSA"})
    return frozenset()


def load_public_pem(text: str) -> Any:
    """A PEM public key; a private key, a certificate or garbage is a ValueError."""
    try:
        key = load_pem_public_key(text.encode())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM public key ({exc.__class__.__name__})") from None
    if not key_algorithms(key):
        raise ValueError(f"unsupported public key type {type(key).__name__}")
    return key


def make_key(kid: str | None, key: Any, allowed: Iterable[str], jwk_alg: str | None = None) -> VerifyKey | None:
    algorithms = key_algorithms(key) & frozenset(allowed)
    if jwk_alg:
        algorithms &= {jwk_alg}
    return VerifyKey(kid, key, algorithms) if algorithms else None


def parse_jwks(document: Any, allowed: Iterable[str]) -> tuple[list[VerifyKey], int]:
    """The usable signing keys of a JWKS document, and how many entries were skipped.

    Skipped: encryption keys (`use` other than `sig`), symmetric (`oct`) and private keys,
    unknown key types and keys whose algorithms are not allowed."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('not a JWKS document (no "keys" list)')
    keys: list[VerifyKey] = []
    skipped = 0
    for entry in document["keys"]:
        key = _jwk_key(entry, allowed)
        if key is None:
            skipped += 1
        else:
            keys.append(key)
    return keys, skipped


def _jwk_key(entry: Any, allowed: Iterable[str]) -> VerifyKey | None:
    if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get("kty") == "oct" or "d" in entry:
        return None
    try:
        key = jwt.PyJWK(entry).key
    except (jwt.exceptions.PyJWKError, jwt.exceptions.InvalidKeyError, ValueError, TypeError, KeyError):
        return None
    kid = entry.get("kid") if isinstance(entry.get("kid"), str) else None
    alg = entry.get("alg") if isinstance(entry.get("alg"), str) else None
    return make_key(kid, key, allowed, alg)


class KeySet:
    """The keys tokens are verified with, looked up by key id and algorithm."""

    def __init__(self, keys: Iterable[VerifyKey] = ()) -> None:
        self.keys = list(keys)
        self.kids = frozenset(key.kid for key in self.keys if key.kid)

    def candidates(self, kid: str | None, alg: str) -> list[VerifyKey]:
        """Keys to try for a token with `kid` and `alg`: those that can verify `alg` and have that
        kid, or have none (a static key configured without one), or any when the token has none."""
        return [key for key in self.keys
                if alg in key.algorithms and (kid is None or key.kid is None or key.kid == kid)]


# -- claims -------------------------------------------------------------------------------


def claim(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by its name, or else by a dotted path into nested objects (`realm_access.roles`)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def claim_values(claims: Mapping[str, Any], name: str) -> list[str]:
    """The strings of a claim: a list of strings, or one string of space- or comma-separated values."""
    if not name:
        return []
    value = claim(claims, name)
    if isinstance(value, str):
        return [part for part in re.split(r"[\s,]+", value) if part]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def role_from_claims(claims: Mapping[str, Any], roles_claim: str = "", groups_claim: str = "",
                     role_mapping: Mapping[str, Role] | None = None,
                     default_role: Role | None = None) -> Role | None:
    """The strongest role the claims grant (see the module docstring), else `default_role`."""
    mapping = role_mapping or {}
    names = {role.value: role for role in Role}
    found = [mapping.get(value) or names.get(value) for value in claim_values(claims, roles_claim)]
    found += [mapping.get(value) for value in claim_values(claims, groups_claim)]
    return highest(role for role in found if role is not None) or default_role


# -- verification -------------------------------------------------------------------------

_REASONS: list[tuple[type[Exception], str]] = [
    (jwt.exceptions.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.exceptions.InvalidAudienceError, "the token is not meant for this audience"),
    (jwt.exceptions.InvalidIssuerError, "the token comes from another issuer"),
    (jwt.exceptions.InvalidAlgorithmError, "the token's algorithm does not match its key"),
    (jwt.exceptions.DecodeError, "the token is not a well-formed JWT"),
]


def _reason_of(exc: jwt.exceptions.InvalidTokenError) -> str:
    if isinstance(exc, jwt.exceptions.MissingRequiredClaimError):
        return f"the token has no {exc.claim} claim"
    return next((text for kind, text in _REASONS if isinstance(exc, kind)), "the token is invalid")


def _number(value: Any) -> bool:
    # NaN would compare as never expired, and JSON parsers read NaN and Infinity
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_times(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    """`exp` past, `nbf` or `iat` ahead of `now` by more than `leeway` → Unauthenticated."""
    for name in ("exp", "nbf", "iat"):
        if name in claims and not _number(claims[name]):
            raise Unauthenticated(f"the token's {name} claim is not a number")
    if claims["exp"] <= now - leeway:
        raise Unauthenticated("the token has expired")
    if "nbf" in claims and claims["nbf"] > now + leeway:
        raise Unauthenticated("the token is not valid yet (nbf)")
    if "iat" in claims and claims["iat"] > now + leeway:
        raise Unauthenticated("the token was issued in the future (iat)")


def unverified_header(token: str, allowed: Iterable[str]) -> tuple[str, str | None]:
    """The token's (alg, kid) when its algorithm is allowed; Unauthenticated otherwise."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.exceptions.InvalidTokenError:  # DecodeError, or a header field of the wrong type
        raise Unauthenticated("the token is not a well-formed JWT") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in allowed:
        shown = alg if isinstance(alg, str) and _PRINTABLE_ALG.match(alg) else "?"
        raise Unauthenticated(f"the token's algorithm {shown} is not allowed")
    kid = header.get("kid")
    return alg, kid if isinstance(kid, str) else None


# -- the extension ------------------------------------------------------------------------


class OidcAuth(Component):
    def __init__(self, settings: Settings, config: OidcConfig) -> None:
        super().__init__(settings)
        self.config = config
        self.clock: Callable[[], float] = time.time  # token times; tests drive a paused one
        self.monotonic: Callable[[], float] = time.monotonic  # refetch rate limit
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # between periodic refreshes
        allowed = config.algorithms
        static = [make_key(k.kid or None, load_public_pem(k.text()), allowed) for k in config.public_keys]
        self._static = [key for key in static if key is not None]
        self._file_state: tuple[float, list[VerifyKey]] = (-1.0, [])
        self._remote: list[VerifyKey] = []
        self.keys = KeySet(self._static)
        self._jwks_url = config.jwks_url
        self._last_fetch: float | None = None
        self._inflight: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ssl = ssl.create_default_context(cafile=config.issuer_ca_path) if config.issuer_ca_path else True
        self._refresher: asyncio.Task | None = None
        self.fetches = 0  # JWKS loads attempted (remote or file), for tests and the debug API
        self._verified: OrderedDict[str, tuple[dict[str, Any], Principal]] = OrderedDict()

    async def start(self, host: Host | None = None) -> None:
        if self.config.jwks_url or self.config.discovers:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout))
        await self.refresh()
        if not self.keys.keys:
            self.log.warning("no signing key yet: every token is refused until the key set can be loaded",
                             extra={"kv": {"issuer": self.config.issuer_url}})
        if self._session is not None or self.config.jwks_file:
            self._refresher = asyncio.create_task(self._refresh_periodically(), name=f"{self.id} jwks refresh")

    async def shutdown(self, deadline: float | None = None) -> None:
        for task in (self._refresher, self._inflight):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        token = credentials(headers, self.config.attribute, "Bearer")
        cached = self._verified.get(token)
        if cached is not None:
            return self._still_valid(token, *cached)
        principal, claims = await self._verify(token)
        if self.config.cache_size:
            self._verified[token] = (claims, principal)
            if len(self._verified) > self.config.cache_size:
                self._verified.popitem(last=False)
        return principal

    def _still_valid(self, token: str, claims: dict[str, Any], principal: Principal) -> Principal:
        """A token verified before: its signature and claims cannot have changed, its times can."""
        try:
            check_times(claims, self.clock(), self.config.leeway)
        except Unauthenticated:
            self._verified.pop(token, None)
            raise
        self._verified.move_to_end(token)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, dict[str, Any]]:
        alg, kid = unverified_header(token, self.config.algorithms)
        candidates = self.keys.candidates(kid, alg)
        if not candidates and kid is not None and kid not in self.keys.kids:
            await self._refresh_for_unknown_kid()
            candidates = self.keys.candidates(kid, alg)
        if not candidates:
            raise Unauthenticated("no current key of the issuer matches the token's key id and algorithm"
                                  if kid is not None else "no current key of the issuer can verify the token")
        claims = self._verified_claims(token, alg, candidates)
        return self._principal(claims), claims

    def _verified_claims(self, token: str, alg: str, candidates: list[VerifyKey]) -> dict[str, Any]:
        error: jwt.exceptions.InvalidTokenError | None = None
        for key in candidates:
            try:
                claims = jwt.decode(token, key.key, algorithms=[alg], audience=self.config.audience,
                                    issuer=self.config.issuer_url, options={
                                        "require": ["exp", "iss", "aud"],
                                        # times are checked below, on our clock and with our leeway
                                        "verify_exp": False, "verify_nbf": False, "verify_iat": False})
            except jwt.exceptions.InvalidSignatureError as exc:
                error = exc  # a token without a kid may match another key
                continue
            except jwt.exceptions.InvalidTokenError as exc:
                raise Unauthenticated(_reason_of(exc)) from None
            check_times(claims, self.clock(), self.config.leeway)
            return claims
        raise Unauthenticated(_reason_of(error or jwt.exceptions.InvalidSignatureError()))

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        subject = claim(claims, self.config.username_claim)
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated(f"the token has no {self.config.username_claim} claim")
        config = self.config
        role = role_from_claims(claims, config.roles_claim, config.groups_claim, config.role_mapping,
                                config.default_role)
        return Principal(subject, role, method=str(self.id), groups=tuple(claim_values(claims, config.groups_claim)))

    # -- key set loading --

    async def refresh(self) -> None:
        """Load the key set again (one load at a time: callers arriving meanwhile wait for it)."""
        if self._inflight is None or self._inflight.done():
            self._last_fetch = self.monotonic()
            self._inflight = asyncio.create_task(self._load())
        await asyncio.shield(self._inflight)

    async def _refresh_for_unknown_kid(self) -> None:
        interval = self.config.jwks_min_refresh_interval
        if self._inflight is not None and not self._inflight.done():
            await asyncio.shield(self._inflight)
        elif self._last_fetch is None or self.monotonic() - self._last_fetch >= interval:
            await self.refresh()

    async def _refresh_periodically(self) -> None:
        while True:
            # Until the issuer's keys could be fetched once, try again sooner.
            loaded = bool(self._remote) or self._session is None
            await self.sleep(self.config.jwks_refresh_interval if loaded else self.config.jwks_min_refresh_interval)
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - a bug in one load must not end the refreshes
                self.log.error("loading the signing keys failed; keeping the keys loaded before", exc_info=True)

    async def _load(self) -> None:
        self.fetches += 1
        before = self.keys.kids
        file_keys = self._load_file()
        if self._session is not None:
            self._remote = await self._load_remote()
        self.keys = KeySet([*self._static, *file_keys, *self._remote])
        self._verified.clear()  # a token verified with a key that has since left must be refused
        if self.keys.kids != before:
            self.log.info("signing keys loaded", extra={"kv": {"keys": len(self.keys.keys),
                                                               "kids": ",".join(sorted(self.keys.kids))}})

    def _load_file(self) -> list[VerifyKey]:
        if not self.config.jwks_file:
            return []
        path = Path(self.config.jwks_file)
        try:
            mtime = path.stat().st_mtime
            if mtime != self._file_state[0]:
                keys, _ = parse_jwks(json.loads(path.read_bytes()), self.config.algorithms)
                self._file_state = (mtime, keys)
        except (OSError, ValueError) as exc:
            self.log.warning("cannot read jwks_file; keeping the keys loaded before",
                             extra={"kv": {"path": str(path), "error": str(exc)[:200]}})
        return self._file_state[1]

    async def _load_remote(self) -> list[VerifyKey]:
        try:
            if not self._jwks_url:
                self._jwks_url = await self._discover()
            keys, skipped = parse_jwks(await self._get_json(self._jwks_url), self.config.algorithms)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            self.log.warning("cannot fetch the issuer's keys; keeping the keys loaded before",
                             extra={"kv": {"url": self._jwks_url or self.config.issuer_url,
                                           "error": f"{exc.__class__.__name__}: {str(exc)[:200]}"}})
            return self._remote
        if skipped:
            self.log.info("JWKS entries skipped (not usable signing keys)", extra={"kv": {"skipped": skipped}})
        return keys

    async def _discover(self) -> str:
        document = await self._get_json(self.config.issuer_url.rstrip("/") + DISCOVERY_PATH)
        if not isinstance(document, dict) or not isinstance(document.get("jwks_uri"), str):
            raise ValueError("the discovery document has no jwks_uri")
        if document.get("issuer") != self.config.issuer_url:
            raise ValueError("the discovery document names another issuer than issuer_url")
        return document["jwks_uri"]

    async def _get_json(self, url: str) -> Any:
        assert self._session is not None
        async with self._session.get(url, ssl=self._ssl) as response:
            if response.status != 200:
                raise ValueError(f"HTTP {response.status} from {url}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError(f"the answer from {url} is larger than {MAX_JWKS_BYTES} bytes")
        return json.loads(body)


factory = Factory("oidc", Kind.EXTENSION, OidcConfig, OidcAuth,
                  description="OIDC/JWT authentication (JWKS with rotation, RS256/ES256/EdDSA) with roles from claims")

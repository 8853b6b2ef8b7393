"""The server-authenticator contract, shared by receivers, the debug API and auth extensions.

An authenticator is an extension (bearertokenauth, oidc) that a receiver or the debug API
names in `auth.authenticator`. For every request it is given the request's headers (HTTP
headers, or gRPC metadata whose keys are lower case) and either returns who is calling, a
`Principal` with at most one of the three roles, or raises `Unauthenticated` with a short
reason. The reason is safe to log and to send back: it never holds the token or any
other secret. The caller answers HTTP 401 with `WWW-Authenticate: <challenge>` or gRPC
UNAUTHENTICATED, and counts the request as refused. A route that needs a role calls
`authorize`, which also raises `Forbidden` (HTTP 403) for a principal whose role is too
weak; `http_middleware` does both for an aiohttp app (the debug API), given the role each
request needs.

Roles are ordered, each one including the rights of those below it:
`viewer` (reads sessions, spans, triggers, decisions) < `operator` (also resets breakers
and lifts throttles) < `admin` (also runs SQL, reloads the config, erases data). A
principal without a role is authenticated but may only do what needs no role (sending
telemetry to an OTLP receiver).
"""
from __future__ import annotations

import enum
import hmac
import logging
import re
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable, Mapping, Protocol, runtime_checkable

from aiohttp import web

from pipeline.telemetry.logs import Throttled


class Role(str, enum.Enum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def includes(self, other: "Role") -> bool:
        """True when this role has every right of `other` (admin includes operator and viewer)."""
        return self.rank >= other.rank


_RANKS = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


def highest(roles: Iterable[Role]) -> Role | None:
    """The strongest of `roles`, or None when there are none."""
    return max(roles, key=lambda role: role.rank, default=None)


@dataclass(frozen=True)
class Principal:
    """Who sent a request, as an authenticator established it."""

    subject: str
    role: Role | None = None
    method: str = ""  # the authenticator's id, e.g. "oidc" or "bearertokenauth/agents"
    groups: tuple[str, ...] = field(default=())
    # A shared credential (the debug API's or the explorer's `auth.token`): it proves the role,
    # not the person, so an action still asks the body who is acting (`requested_by`).
    shared: bool = False

    @property
    def roles(self) -> frozenset[Role]:
        """Every role this principal holds, counting those its role includes."""
        if self.role is None:
            return frozenset()
        return frozenset(role for role in Role if self.role.includes(role))

    def allows(self, required: Role | None) -> bool:
        """May this principal do something that needs `required` (None: any authenticated caller)?"""
        return required is None or (self.role is not None and self.role.includes(required))


class Unauthenticated(Exception):
    """The request does not prove who sent it. `reason` names what is wrong, never a secret."""

    def __init__(self, reason: str, scheme: str = "Bearer", realm: str = "agentdbg") -> None:
        super().__init__(reason)
        self.reason = reason
        self.scheme = scheme
        self.realm = realm

    @property
    def challenge(self) -> str:
        """The `WWW-Authenticate` value of the 401 (RFC 6750 style for the Bearer scheme)."""
        text = f'{self.scheme} realm="{self.realm}"'
        if self.reason != MISSING:
            description = self.reason.replace('"', "'")
            text += f', error="invalid_token", error_description="{description}"'
        return text


MISSING = "no credentials in the request"


@runtime_checkable
class Authenticator(Protocol):
    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """Who sent the request with these headers; raises `Unauthenticated` if it cannot tell."""
        ...


def header_value(headers: Mapping[str, str], name: str) -> str:
    """`name`'s value, looked up without regard to case (gRPC metadata keys are lower case)."""
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), "")
    return value if isinstance(value, str) else ""


def credentials(headers: Mapping[str, str], header: str, scheme: str) -> str:
    """The credentials after `scheme` in `header` (scheme matched without regard to case).

    Raises `Unauthenticated` when the header is missing or carries another scheme."""
    value = header_value(headers, header).strip()
    if not value:
        raise Unauthenticated(MISSING, scheme)
    given, _, rest = value.partition(" ")
    if given.lower() != scheme.lower() or not rest.strip():
        raise Unauthenticated(f"the {header} header does not carry {scheme} credentials", scheme)
    return rest.strip()


# Where `http_middleware` leaves the principal on the request (read it with `principal_of`).
PRINCIPAL = web.RequestKey("principal", Principal)


def principal_of(request: web.Request) -> Principal | None:
    """The principal `http_middleware` established for `request`, if any."""
    found = request.get(PRINCIPAL)
    return found if isinstance(found, Principal) else None


class Forbidden(Exception):
    """The caller is known but its role does not allow the action."""

    def __init__(self, principal: Principal, required: Role) -> None:
        held = principal.role.value if principal.role else "no role"
        self.reason = f"this needs the {required.value} role; the caller has {held}"
        super().__init__(self.reason)
        self.principal = principal
        self.required = required


async def authorize(authenticator: Authenticator, headers: Mapping[str, str], required: Role | None) -> Principal:
    """The caller, when it may do what needs `required`; `Unauthenticated` or `Forbidden` otherwise."""
    principal = await authenticator.authenticate(headers)
    if not principal.allows(required):
        raise Forbidden(principal, required)  # type: ignore[arg-type]  # allows(None) is always true
    return principal


Middleware = Callable[..., Awaitable[web.StreamResponse]]


class Public(enum.Enum):
    """A route anyone may call without credentials (a liveness probe the user made public, UI assets)."""

    PUBLIC = "public"


PUBLIC = Public.PUBLIC
Needs = Role | Public  # what a route declares: a role, or that it is public


@dataclass(frozen=True)
class Route:
    """One line of a surface's route table: `method` and `pattern` (aiohttp's `{name}` for one
    path segment, `{name:.+}` for the rest) and the role it needs."""

    method: str
    pattern: str
    needs: Needs

    def matches(self, method: str, path: str) -> bool:
        return (self.method == method or (self.method == "GET" and method == "HEAD")) and \
            _pattern_regex(self.pattern).fullmatch(path) is not None


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", pattern)
    regex = "".join((".+" if ":" in part else "[^/]+") if part.startswith("{") else re.escape(part)
                    for part in parts)
    return re.compile(regex)


class RouteTable:
    """A surface's declared routes → roles. A request no line matches needs `admin` (fail
    closed: a route someone adds without declaring its role is not opened by accident)."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)

    def needs(self, method: str, path: str) -> Needs:
        return next((route.needs for route in self.routes if route.matches(method, path)), Role.ADMIN)

    def declared(self, method: str, path: str) -> bool:
        return any(route.matches(method, path) for route in self.routes)


class StaticToken:
    """The simple option of the debug API and the explorer (`auth.token`): one shared token whose
    holder is `subject` with `role` (admin: it is the one credential of that surface)."""

    def __init__(self, token: str, subject: str, role: Role = Role.ADMIN) -> None:
        self._expected = token.encode()
        self.principal = Principal(subject, role, method="token", shared=True)

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        given = credentials(headers, "Authorization", "Bearer").encode()
        if not hmac.compare_digest(given, self._expected):
            raise Unauthenticated("the token is not the configured token")
        return self.principal


def http_middleware(authenticator_of: Callable[[], Authenticator | None],
                    required_role: Callable[[web.Request], Needs | None]) -> Middleware:
    """aiohttp middleware: 401 (with the challenge) / 403 unless the caller may make the request.

    `authenticator_of` is asked on every request (an extension is replaced on reload); when it
    gives None the request passes unchecked, and so does a route that `required_role` says is
    `PUBLIC`. The principal is left in `request[PRINCIPAL]`."""

    @web.middleware
    async def check(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        authenticator = authenticator_of()
        needs = required_role(request) if authenticator is not None else PUBLIC
        if needs is not PUBLIC and authenticator is not None:
            try:
                request[PRINCIPAL] = await authorize(authenticator, request.headers, needs)
            except Unauthenticated as exc:
                _refused(request, 401, exc.reason, None)
                raise web.HTTPUnauthorized(text=f"401 unauthenticated: {exc.reason}",
                                           headers={"WWW-Authenticate": exc.challenge}) from None
            except Forbidden as exc:
                _refused(request, 403, exc.reason, exc.principal)
                raise web.HTTPForbidden(text=f"403 forbidden: {exc.reason}") from None
        return await handler(request)

    return check


# Refused requests, logged as a security trail but throttled per (status, method, surface port):
# a scanner or a client with a stale token must not flood the log; each line says how many were
# held back since the last one.
REFUSALS = Throttled(logging.getLogger("agentdbg.auth"), interval=10.0)


def _refused(request: web.Request, status: int, reason: str, principal: Principal | None) -> None:
    port = request.url.port or ""
    REFUSALS.warning("request refused", key=f"{status} {request.method} {port}", kv={
        "status": status, "method": request.method, "path": request.path[:200], "reason": reason,
        "remote": request.remote or "", "subject": principal.subject if principal else ""})

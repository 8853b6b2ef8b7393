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
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable, Mapping, Protocol, runtime_checkable

from aiohttp import web


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


# Where `http_middleware` leaves the principal on the request (a typed key where aiohttp has them).
PRINCIPAL = web.RequestKey("principal", Principal) if hasattr(web, "RequestKey") else "principal"


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


def http_middleware(authenticator_of: Callable[[], Authenticator | None],
                    required_role: Callable[[web.Request], Role | None]) -> Middleware:
    """aiohttp middleware: 401 (with the challenge) / 403 unless the caller may make the request.

    `authenticator_of` is asked on every request (an extension is replaced on reload); when it
    gives None the request passes unchecked. The principal is left in `request[PRINCIPAL]`."""

    @web.middleware
    async def check(request: web.Request, handler):
        authenticator = authenticator_of()
        if authenticator is not None:
            try:
                request[PRINCIPAL] = await authorize(authenticator, request.headers, required_role(request))
            except Unauthenticated as exc:
                raise web.HTTPUnauthorized(text=f"401 unauthenticated: {exc.reason}",
                                           headers={"WWW-Authenticate": exc.challenge}) from None
            except Forbidden as exc:
                raise web.HTTPForbidden(text=f"403 forbidden: {exc.reason}") from None
        return await handler(request)

    return check

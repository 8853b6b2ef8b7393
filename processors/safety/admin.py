"""An operator's actions on the safety state, over the debug API:

    POST /debug/breakers/<name>/reset          close a breaker, back on the primary
    POST /debug/throttles/<subject_key>/lift   end a cost throttle

Body `{"requested_by": "<who>", "reason": "<why>"}` (`reason` optional). Each action is a
decision like any other (exported, audited, in `/debug/decisions`) with `requested_by`.
An `Idempotency-Key` header makes a retried request decide nothing new. The debug API
answers 403 to any of them unless it has an `auth.token` or `auth.authenticator`, 401 without
valid credentials, 403 for a role weaker than `operator` (its route table), and records each
one in the audit trail (who, role, peer address, outcome, the decision ids). When the debug API
establishes who is calling (a `pipeline.auth.Principal`, `pipeline.auth.principal_of`), that
principal is who asked (the body's `requested_by` is then optional) and it needs the
`operator` role; a shared token (`auth.token`) proves the role only, so the body names who asks.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.auth import Role, principal_of

ROUTES = {"breakers": "reset", "throttles": "lift"}


class AdminRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    requested_by: str = Field("", max_length=200)
    reason: str = Field("", max_length=1000)


@dataclass(frozen=True)
class AdminAction:
    route: str          # breakers | throttles
    target: str         # breaker name | subject key
    requested_by: str
    reason: str
    request_id: str


async def parse(request: web.Request) -> AdminAction:
    """The action a POST asks for; HTTP 404 for an unknown path, 400 for a bad body, 403 for
    a principal without the operator role."""
    route, _, rest = request.match_info["name"].strip("/").partition("/")
    target, _, verb = rest.rpartition("/")
    if route not in ROUTES or verb != ROUTES[route] or not target:
        raise web.HTTPNotFound(text=f"no action at {request.path}; the safety actions are POST "
                                    "/debug/breakers/<name>/reset and POST /debug/throttles/<subject_key>/lift")
    try:
        body = AdminRequest.model_validate_json(await request.read() or b"{}")
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                             for e in exc.errors(include_url=False))
        raise web.HTTPBadRequest(
            text=f'the body must be {{"requested_by": "<who>", "reason": "<why>"}}: {problems}') from None
    request_id = request.headers.get("Idempotency-Key") or uuid.uuid4().hex
    return AdminAction(route, target, requested_by(request, body), body.reason, request_id)


def requested_by(request: web.Request, body: AdminRequest) -> str:
    principal = principal_of(request)
    if principal is not None and not principal.shared:
        if not principal.allows(Role.OPERATOR):
            raise web.HTTPForbidden(text=f"{principal.subject} may not change the safety state: that needs the "
                                         f"operator role (has {principal.role.value if principal.role else 'none'})")
        return principal.subject
    if not body.requested_by.strip():
        raise web.HTTPBadRequest(text='say who asks: the body must be {"requested_by": "<who>", "reason": "<why>"}')
    return body.requested_by.strip()

"""Who asked for an admin action: the authenticated principal when the debug API knows one
(it needs the operator role), else the name the body gives."""
from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from pipeline.auth import PRINCIPAL, Principal, Role
from processors.safety.admin import AdminRequest, requested_by


def request(principal: Principal | None = None) -> web.Request:
    made = make_mocked_request("POST", "/debug/breakers/database/reset")
    if principal is not None:
        made[PRINCIPAL] = principal
    return made


def test_the_authenticated_principal_is_who_asked():
    operator = Principal("alice@example.com", Role.OPERATOR, "oidc")
    assert requested_by(request(operator), AdminRequest(requested_by="someone else")) == "alice@example.com"
    assert requested_by(request(Principal("root", Role.ADMIN)), AdminRequest()) == "root"


def test_a_viewer_may_not_change_the_safety_state():
    with pytest.raises(web.HTTPForbidden) as refused:
        requested_by(request(Principal("bob", Role.VIEWER)), AdminRequest(requested_by="bob"))
    assert "needs the operator role (has viewer)" in refused.value.text


def test_without_a_principal_the_body_must_say_who_asks():
    assert requested_by(request(), AdminRequest(requested_by=" carol ")) == "carol"
    with pytest.raises(web.HTTPBadRequest) as refused:
        requested_by(request(), AdminRequest(reason="who?"))
    assert "requested_by" in refused.value.text

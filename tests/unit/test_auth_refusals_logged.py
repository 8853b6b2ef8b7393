"""Refused requests to a role-checked surface are a security trail in the log: the first of a
kind (status, method, port) is one warning with who (the subject, for a 403), from where and
why, the repeats within the interval are held back and counted on the next line. The clock is
a paused one; no token reaches the log."""
from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from extensions.bearertokenauth import BearerTokenAuth, BearerTokenAuthConfig
from pipeline import auth
from pipeline.auth import Role, http_middleware
from pipeline.component import ComponentID, Kind, Settings


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    paused = Clock()
    monkeypatch.setattr(auth, "REFUSALS", auth.Throttled(logging.getLogger("agentdbg.auth"), 10.0, paused))
    return paused


async def test_refusals_are_logged_once_per_interval_with_the_count_held_back(clock, caplog) -> None:
    config = BearerTokenAuthConfig.model_validate({"tokens": [{"token": "viewer-secret", "role": "viewer",
                                                               "subject": "dashboards"}]})
    tokens = BearerTokenAuth(Settings.make(Kind.EXTENSION, ComponentID("bearertokenauth")), config)
    app = web.Application(middlewares=[http_middleware(lambda: tokens, lambda request: Role.ADMIN)])

    async def reset(_: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_post("/reset", reset)
    caplog.set_level(logging.WARNING, logger="agentdbg.auth")
    async with TestClient(TestServer(app)) as client:
        for _ in range(5):
            assert (await client.post("/reset", headers={"Authorization": "Bearer guessed-secret"})).status == 401
        forbidden = await client.post("/reset", headers={"Authorization": "Bearer viewer-secret"})
        assert forbidden.status == 403
        clock.now += 11
        assert (await client.post("/reset")).status == 401
    lines = [record for record in caplog.records if record.name == "agentdbg.auth"]
    assert [(r.kv["status"], r.kv["held_back"], r.kv["subject"]) for r in lines] == [  # type: ignore[attr-defined]
        (401, 0, ""), (403, 0, "dashboards"), (401, 4, "")]
    assert lines[1].kv["reason"] == "this needs the admin role; the caller has viewer"  # type: ignore[attr-defined]
    assert lines[0].kv["remote"] == "127.0.0.1" and lines[0].kv["path"] == "/reset"  # type: ignore[attr-defined]
    assert "guessed-secret" not in caplog.text and "viewer-secret" not in caplog.text

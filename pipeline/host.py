"""The host: what every component sees of the running service.

It carries the service's health (for the health_check and debug_api extensions) and the
debug HTTP routes components contribute (`/debug/...`), and outlives graph reloads.
"""
from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Host:
    def __init__(self) -> None:
        self.started_at = time.time()
        self.ready = False
        self.status = "starting"
        self.debug_routes: dict[str, Handler] = {}
        self.extensions: dict[str, Any] = {}  # running extensions by id, for receivers' `auth`
        self.describe_graph: Callable[[], dict[str, Any]] = lambda: {}

    def add_debug_route(self, path: str, handler: Handler) -> None:
        """Serve `handler` at `/debug/<path>` on the debug API (replacing an earlier one)."""
        self.debug_routes[path.strip("/")] = handler

    def authenticator(self, name: str) -> Any:
        """The running extension a receiver's `auth.authenticator` names."""
        extension = self.extensions.get(name)
        if extension is None or not hasattr(extension, "authenticate"):
            raise ValueError(f'authenticator "{name}" is not a configured extension listed in service::extensions')
        return extension

    def set_status(self, status: str, ready: bool) -> None:
        self.status = status
        self.ready = ready

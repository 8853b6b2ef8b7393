"""The host: what every component sees of the running service.

It carries the service's health (for the health_check and debug_api extensions), the
debug HTTP routes components contribute (`/debug/...`) and what each processor needs to
know of the stages after it (`downstream`), and outlives graph reloads.
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from pipeline.auth import Authenticator
from pipeline.contracts import Storage

if TYPE_CHECKING:
    from pipeline.component import Component

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Downstream:
    """What the graph tells a processor about the rest of its pipeline."""

    pipeline: str = ""
    # The `sending_queue.storage` (a file_storage extension id) of the first exporter of the
    # pipeline whose queue is persistent: an OK must then mean "on disk" (see processors/batch.py).
    storage: str | None = None


class Host:
    def __init__(self) -> None:
        self.started_at = time.time()
        self.ready = False
        self.status = "starting"
        self.debug_routes: dict[str, Handler] = {}
        self.extensions: dict[str, Component] = {}  # running extensions by id (auth, storage)
        self.describe_graph: Callable[[], dict[str, Any]] = lambda: {}
        # Load the config files again (the service sets it; the debug API's POST /debug/reload).
        self.reload: Callable[[], Awaitable[bool]] | None = None
        self._downstream: weakref.WeakKeyDictionary[Component, Downstream] = weakref.WeakKeyDictionary()

    def add_debug_route(self, path: str, handler: Handler) -> None:
        """Serve `handler` at `/debug/<path>` on the debug API (replacing an earlier one)."""
        self.debug_routes[path.strip("/")] = handler

    def authenticator(self, name: str) -> Authenticator:
        """The running extension a receiver's `auth.authenticator` names (a `pipeline.auth.Authenticator`)."""
        extension = self.extensions.get(name)
        if extension is None or not isinstance(extension, Authenticator):
            raise ValueError(f'authenticator "{name}" is not a configured extension listed in service::extensions')
        return extension

    def storage(self, name: str, setting: str) -> Storage:
        """The running storage extension (`pipeline.contracts.Storage`) that `setting` names;
        ValueError (a start error) when `name` is not one."""
        extension = self.extensions.get(name)
        if extension is None or not isinstance(extension, Storage):
            raise ValueError(f'{setting} "{name}" is not a file_storage extension listed in service::extensions')
        return extension

    def set_downstream(self, processor: Component, downstream: Downstream) -> None:
        self._downstream[processor] = downstream

    def downstream(self, processor: Component) -> Downstream:
        """Set by the graph before it starts `processor`; empty for a processor it did not build."""
        return self._downstream.get(processor, Downstream())

    def set_status(self, status: str, ready: bool) -> None:
        self.status = status
        self.ready = ready

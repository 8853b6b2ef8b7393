"""The running daemon: load config, run the graph, reload on SIGHUP, drain on SIGTERM.

- SIGTERM / SIGINT: receivers stop taking data, processors flush, exporter queues drain
  until `service.shutdown_timeout`, then the process exits 0.
- SIGHUP: the config files are read again. If they are valid, a new graph is built beside
  the old one (unchanged receivers and exporters are kept with their sockets and queues),
  started, and the old one drained; no accepted span is lost. If not, every error is logged
  and the old graph keeps running (otelcol exits instead).
"""
from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time

from aiohttp import web

from pipeline import audit, workers
from pipeline.auth import Authenticator, Principal
from pipeline.component import ComponentID, Kind
from pipeline.config.endpoints import bind_failure
from pipeline.config.loader import load_with_origins
from pipeline.config.resolve import ResolvedConfig, resolve
from pipeline.errors import ConfigErrors
from pipeline.graph import Graph
from pipeline.host import Host
from pipeline.netaddr import BindError
from pipeline.registry import factories
from pipeline.status import InstanceKey, Scope, Status, instance_key
from pipeline.status import registry as status_registry
from pipeline.telemetry import logs, metrics
from pipeline.telemetry.server import MetricsServer

log = logging.getLogger("agentdbg.service")


def load_config(sources: list[str]) -> ResolvedConfig:
    """Load, merge, expand and validate; raises ConfigErrors with every problem found. In a
    worker process (`service.workers`), its share of the config (pipeline/workers.py)."""
    raw, origins = load_with_origins(sources)
    return workers.worker_config(resolve(raw, factories(), origins))


class Service:
    def __init__(self, sources: list[str], config: ResolvedConfig) -> None:
        self.sources = sources
        self.config = config
        self.host = Host()
        self.graph: Graph | None = None
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._metrics_server: MetricsServer | None = None

    async def run(self) -> int:
        telemetry = self.config.service.telemetry
        logs.setup(telemetry.logs.level, telemetry.logs.encoding)
        if telemetry.metrics.level != "none":
            server = MetricsServer(telemetry.metrics.address, self._metrics_authenticator)
            try:
                await server.start()
            except BindError as exc:
                log.error(bind_failure(self.config, exc.endpoint, exc.reason))
                return 1
            self._metrics_server = server
        self.graph = Graph(self.config)
        self.host.describe_graph = lambda: self.graph.describe() if self.graph else {}
        self.host.reload = self.reload
        status_registry.track(status_keys(self.graph))
        if not await self._start_graph():
            return 1
        status_registry.set_all(Status.OK, only=Status.STARTING)
        self._install_signals()
        self._tune_gc()
        self.host.set_status("Server available", ready=True)
        log.info("everything is ready; begin running and processing data",
                 extra={"kv": {"pipelines": ",".join(p.name for p in self.config.pipelines)}})
        await self._stop.wait()
        return await self._shutdown()

    def _metrics_authenticator(self) -> Authenticator | None:
        """The authenticator `/metrics` needs now (the config may have been reloaded)."""
        name = self.config.service.telemetry.metrics.auth.authenticator
        if not name:
            return None
        try:
            return self.host.authenticator(name)
        except ValueError as exc:  # fail closed while it is not running (before start, during a reload)
            raise web.HTTPServiceUnavailable(text=str(exc)) from None

    async def _start_graph(self) -> bool:
        """Start the graph; a component that cannot start (port taken, directory locked) is
        reported as one error line and the daemon exits 1, after stopping what did start."""
        assert self.graph is not None
        try:
            await self.graph.start(self.host)
            return True
        except BindError as exc:
            log.error(bind_failure(self.config, exc.endpoint, exc.reason))
        except Exception as exc:  # noqa: BLE001 - any component's start failure
            log.error("cannot start the pipelines", extra={"kv": {"error": str(exc)}})
        try:
            await self.graph.shutdown(time.monotonic() + 5.0)
        except Exception:  # noqa: BLE001 - best effort: the process is exiting
            log.debug("cleanup after a failed start was incomplete", exc_info=True)
        if self._metrics_server:
            await self._metrics_server.stop()
        return False

    def _tune_gc(self) -> None:
        settings = self.config.service.gc
        _, second, third = gc.get_threshold()
        gc.set_threshold(settings.threshold, second, third)
        if settings.freeze:
            gc.collect()
            gc.freeze()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self._reload_on_sighup()))

    async def _reload_on_sighup(self) -> None:
        """A reload asked by a signal, recorded in the audit trail like the debug API's (the sender
        is a local user allowed to signal this process; the kernel does not say which)."""
        applied = await self.reload()
        await audit.record(audit.document("config_reload", ",".join(self.sources),
                                          Principal("SIGHUP", None, method="signal"), "local",
                                          200 if applied else 422, {"signal": "SIGHUP"}))

    async def _shutdown(self) -> int:
        self.host.set_status("Server not available", ready=False)
        status_registry.set_all(Status.STOPPING)
        log.info("shutting down; draining queues",
                 extra={"kv": {"timeout_s": self.config.service.shutdown_timeout}})
        async with self._reload_lock:
            deadline = time.monotonic() + self.config.service.shutdown_timeout
            assert self.graph is not None
            await self.graph.shutdown(deadline)
        status_registry.set_all(Status.STOPPED)
        if self._metrics_server:
            await self._metrics_server.stop()
        log.info("shutdown complete")
        return 0

    async def reload(self) -> bool:
        async with self._reload_lock:
            if self._stop.is_set():
                return False
            log.info("SIGHUP received; reloading configuration", extra={"kv": {"config": ",".join(self.sources)}})
            try:
                config = load_config(self.sources)
                new_graph = Graph(config, previous=self.graph)
            except ConfigErrors as exc:
                for error in exc.errors:
                    log.error("invalid configuration; keeping the running pipelines", extra={"kv": {"error": error}})
                metrics.config_reloads.labels("rejected").inc()
                return False
            try:
                await self._swap(config, new_graph)
            except BindError as exc:
                log.error("reload failed; " + bind_failure(config, exc.endpoint, exc.reason))
                metrics.config_reloads.labels("failed").inc()
                return False
            except Exception:
                log.exception("reload failed while starting the new pipelines")
                metrics.config_reloads.labels("failed").inc()
                return False
            metrics.config_reloads.labels("applied").inc()
            log.info("configuration reloaded")
            return True

    async def _swap(self, config: ResolvedConfig, new: Graph) -> None:
        old = self.graph
        assert old is not None
        keep = new.reused
        deadline = time.monotonic() + config.service.shutdown_timeout
        # Changed extensions may hold the same ports: stop the old ones first.
        for component in old.extensions.values():
            if id(component) not in keep:
                await component.shutdown(deadline)
        for component in new.extensions.values():
            if id(component) not in keep:
                await component.start(self.host)
        self.host.extensions = {str(cid): component for cid, component in new.extensions.items()}
        await new.start_pipelines(self.host)
        await old.stop_receivers(keep)
        new.connect_receivers()
        for receiver in new.receivers.values():
            if id(receiver) not in keep:
                await receiver.start(self.host)
        self.graph, self.config = new, config
        status_registry.track(status_keys(new))
        status_registry.set_all(Status.OK, only=Status.STARTING)
        logs.setup(config.service.telemetry.logs.level, config.service.telemetry.logs.encoding)
        old.extensions = {}
        old.receivers = {}
        await old.shutdown(deadline, keep)


def status_keys(graph: Graph) -> dict[str, list[InstanceKey]]:
    """Each pipeline's component instances, as the status registry names them: receivers and
    connectors are one instance per id, exporters one per id and signal, processors one per
    pipeline."""
    def end(kind: Kind, cid: ComponentID, scope: Scope = None) -> InstanceKey:
        return instance_key(Kind.CONNECTOR, cid) if cid in graph.connectors else instance_key(kind, cid, scope)

    return {pipeline.name: [*(end(Kind.RECEIVER, cid) for cid in pipeline.receivers),
                            *(instance_key(Kind.PROCESSOR, cid, pipeline.name) for cid in pipeline.processors),
                            *(end(Kind.EXPORTER, cid, pipeline.signal) for cid in pipeline.exporters)]
            for pipeline in graph.config.pipelines}

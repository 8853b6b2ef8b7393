"""`service.workers: N`: N worker processes on one host behind the same OTLP ports.

otelcol has no such setting (one Go process uses every core); one Python process uses one
core, so past one core the daemon runs several. `agentdbg run` with `workers: N` (N > 1) is a
supervisor: it starts N copies of itself (`agentdbg run` with the same config files, told
which worker they are by `AGENTDBG_WORKER=i/N`) and runs no pipeline of its own. What each
worker gets of the config (`for_worker`):
- the `otlp` receivers listen with SO_REUSEPORT (`reuse_port: true`): the kernel spreads
  incoming connections over the workers, and a worker that is down gets none;
- its own queues: a `file_storage` directory gets a `worker-<i>` sub-directory and a `file`
  exporter's path a `.worker-<i>` infix, so no two processes write one file;
- its share of memory: `memory_limiter`'s limits divided by N;
- the servers that are one per host (health_check, debug_api, explorer: every extension with
  an `endpoint`) run in worker 0 only; each worker's pipelines are the same config, so worker
  0's debug API describes them all. Its `/debug/reload` reloads worker 0; SIGHUP to the
  supervisor reloads every worker;
- `/metrics`: the supervisor serves one endpoint at `service.telemetry.metrics.address`, as a
  user expects of one daemon: every worker's samples with a `worker="<i>"` label (each worker's
  own endpoint is on a loopback port picked by the supervisor; a scrape's Authorization header
  is passed on to it), plus `agentdbg_worker_up{worker}` and
  `agentdbg_worker_restarts_total{worker}`.

What it promises: a worker that exits while the supervisor is not stopping is logged and
started again after `RESTART_DELAY` (its persistent queue is where it left it, so what it had
accepted on disk is sent by the new one). SIGTERM / SIGINT go to every worker, each drains its
queues as a single daemon does, and the supervisor exits 0 once all did (else the first
non-zero code). SIGHUP goes to every worker.

State that one process must hold is refused at config check when N > 1 (`check`): the
`triggers` connector and the `safety` processor judge what their process sees, so N workers
would each judge a share; they run in an evaluator (config/evaluator.yaml) fed through Kafka,
with the detector input published by the workers' kafka exporters keyed by subject
(`partition_by`). The embedded `chdb` engine holds its directory for one process, and only the
`otlp` receiver can share its port.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
import sys
from pathlib import PurePath
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from pipeline.component import ComponentID, Kind
from pipeline.config import endpoints
from pipeline.netaddr import split_host_port

if TYPE_CHECKING:
    from pipeline.config.resolve import ComponentConfig, ResolvedConfig

WORKER_ENV = "AGENTDBG_WORKER"            # "i/N", set by the supervisor in each worker
METRICS_ENV = "AGENTDBG_WORKER_METRICS"   # the worker's own metrics address (loopback)
RESTART_DELAY = 1.0
SCRAPE_TIMEOUT = 5.0
log = logging.getLogger("agentdbg.workers")

# Components whose state or files belong to one process, and what to do instead.
SINGLE_PROCESS: dict[tuple[Kind, str], str] = {
    (Kind.CONNECTOR, "triggers"): (
        "its detectors keep their windows per process, so each worker would judge only its share of "
        "the spans: publish the detector input to Kafka with the kafka exporter's partition_by "
        "(config/collector.yaml) and run the triggers connector in an evaluator with workers: 1 "
        "(config/evaluator.yaml)"),
    (Kind.PROCESSOR, "safety"): (
        "its breakers, canaries and budgets are per process: run the safety consumer "
        "(config/safety.yaml) on its own, with workers: 1"),
    (Kind.EXPORTER, "chdb"): (
        "the embedded ClickHouse engine holds its directory for one process: use the clickhouse "
        "exporter with a ClickHouse server"),
}
SHARED_PORT_RECEIVERS = frozenset({"otlp"})  # receivers that listen with SO_REUSEPORT
MEMORY_KEYS = ("limit_mib", "spike_limit_mib", "limit_percentage", "spike_limit_percentage")


def current() -> tuple[int, int] | None:
    """(index, count) in a worker process; None in a daemon that is not one."""
    text = os.environ.get(WORKER_ENV)
    if not text:
        return None
    index, _, count = text.partition("/")
    return int(index), int(count)


# -- config check ----------------------------------------------------------------------------------

def check(config: ResolvedConfig) -> list[str]:
    """Why this config cannot run as `service.workers` processes (nothing when workers is 1)."""
    count = config.service.workers
    if count <= 1:
        return []
    errors = []
    connectors = config.section(Kind.CONNECTOR)
    in_use = {(Kind.CONNECTOR if cid in connectors else kind, cid)
              for p in config.pipelines
              for kind, ids in ((Kind.RECEIVER, p.receivers), (Kind.PROCESSOR, p.processors),
                                (Kind.EXPORTER, p.exporters))
              for cid in ids}
    for kind, cid in sorted(in_use, key=str):
        reason = SINGLE_PROCESS.get((kind, cid.type))
        if reason:
            errors.append(f"service::workers: {count} cannot run {kind.section}::{cid}: {reason}")
    for address in endpoints.receiver_addresses(config):
        receiver = address.path.split("::")[1]
        if ComponentID.parse(receiver).type not in SHARED_PORT_RECEIVERS:
            errors.append(f"service::workers: {count} cannot share {address.path} between workers: only the "
                          f"otlp receiver listens with SO_REUSEPORT; run that receiver in a daemon with workers: 1")
    return errors


# -- one worker's config ---------------------------------------------------------------------------

def for_worker(config: ResolvedConfig, index: int, count: int, metrics_address: str | None) -> ResolvedConfig:
    """The config worker `index` of `count` runs (module docstring: what each worker gets)."""
    components = {kind: {cid: _worker_component(item, index, count) for cid, item in section.items()}
                  for kind, section in config.components.items()}
    service = config.service
    if index > 0:
        listening = {address.path.split("::")[1] for address in endpoints.listen_addresses(config)
                     if address.path.startswith("extensions::")}
        service = service.model_copy(update={"extensions": [e for e in service.extensions if e not in listening]})
    if metrics_address:
        telemetry = service.telemetry
        service = service.model_copy(update={"telemetry": telemetry.model_copy(update={
            "metrics": telemetry.metrics.model_copy(update={"address": metrics_address})})})
    return dataclasses.replace(config, components=components, service=service)


def _worker_component(item: ComponentConfig, index: int, count: int) -> ComponentConfig:
    model, kind, kind_type = item.config, item.factory.kind, item.factory.type
    if kind == Kind.RECEIVER and kind_type == "otlp":
        protocols = model.protocols  # type: ignore[attr-defined]
        update = {name: getattr(protocols, name).model_copy(update={"reuse_port": True})
                  for name in ("grpc", "http") if getattr(protocols, name) is not None}
        model = model.model_copy(update={"protocols": protocols.model_copy(update=update)})
    elif kind == Kind.EXTENSION and kind_type == "file_storage":
        model = model.model_copy(update={"directory": str(PurePath(model.directory) / f"worker-{index}")})  # type: ignore[attr-defined]
    elif kind == Kind.EXPORTER and kind_type == "file":
        path = PurePath(model.path)  # type: ignore[attr-defined]
        model = model.model_copy(update={"path": str(path.with_name(f"{path.stem}.worker-{index}{path.suffix}"))})
    elif kind == Kind.PROCESSOR and kind_type == "memory_limiter":
        model = model.model_copy(update={key: getattr(model, key) // count for key in MEMORY_KEYS})
    return dataclasses.replace(item, config=model) if model is not item.config else item


# -- the supervisor --------------------------------------------------------------------------------

class Worker:
    def __init__(self, index: int, metrics_address: str | None) -> None:
        self.index = index
        self.metrics_address = metrics_address
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.up = False  # its /metrics answered at the last scrape


class Supervisor:
    def __init__(self, sources: list[str], config: ResolvedConfig) -> None:
        self.sources = sources
        self.config = config
        self.count = config.service.workers
        metrics_on = config.service.telemetry.metrics.level != "none"
        self.workers = [Worker(i, f"127.0.0.1:{_free_port()}" if metrics_on else None) for i in range(self.count)]
        self.stopping = asyncio.Event()
        self.runner: web.AppRunner | None = None

    async def run(self) -> int:
        if not await self._serve_metrics():
            return 1
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._signal_all(signal.SIGHUP))
        log.info("starting workers", extra={"kv": {"workers": self.count}})
        codes = await asyncio.gather(*(self._keep_running(worker) for worker in self.workers))
        if self.runner is not None:
            await self.runner.cleanup()
        return next((code for code in codes if code), 0)

    async def _keep_running(self, worker: Worker) -> int:
        """Run one worker until the supervisor stops; start it again whenever it exits before."""
        while True:
            worker.proc = await asyncio.create_subprocess_exec(*self._command(), env=self._env(worker))
            waiting = asyncio.ensure_future(worker.proc.wait())
            stopping = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if self.stopping.is_set():
                stopping.cancel()
                if worker.proc.returncode is None:
                    worker.proc.send_signal(signal.SIGTERM)
                return await waiting
            stopping.cancel()
            worker.restarts += 1
            log.error("worker exited; starting it again", extra={"kv": {
                "worker": worker.index, "code": worker.proc.returncode, "restarts": worker.restarts}})
            await asyncio.sleep(RESTART_DELAY)
            if self.stopping.is_set():
                return 0

    def _command(self) -> list[str]:
        args = [sys.executable, "-m", "pipeline", "run"]
        for source in self.sources:
            args += ["--config", source]
        return args

    def _env(self, worker: Worker) -> dict[str, str]:
        env = {**os.environ, WORKER_ENV: f"{worker.index}/{self.count}"}
        if worker.metrics_address:
            env[METRICS_ENV] = worker.metrics_address
        return env

    def _signal_all(self, signum: int) -> None:
        for worker in self.workers:
            if worker.proc is not None and worker.proc.returncode is None:
                worker.proc.send_signal(signum)

    # -- one /metrics for every worker -----------------------------------------------------------
    async def _serve_metrics(self) -> bool:
        metrics = self.config.service.telemetry.metrics
        if metrics.level == "none":
            return True
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        host, port = split_host_port(metrics.address)
        try:
            await web.TCPSite(self.runner, host, port).start()
        except OSError as exc:
            log.error("cannot listen for /metrics", extra={"kv": {"address": metrics.address, "error": str(exc)}})
            await self.runner.cleanup()
            return False
        return True

    async def _metrics(self, request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            answers = await asyncio.gather(*(self._scrape(session, w, headers) for w in self.workers))
        refused = next((status for status, _ in answers if status in (401, 403)), None)
        if refused is not None:
            return web.Response(status=refused, text="the workers refused the scrape's credentials")
        body = render({w.index: text for w, (_, text) in zip(self.workers, answers) if text is not None},
                      self.workers)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    @staticmethod
    async def _scrape(session: aiohttp.ClientSession, worker: Worker, headers: dict[str, str]
                      ) -> tuple[int, str | None]:
        worker.up = False
        if worker.metrics_address is None:
            return 0, None
        try:
            async with session.get(f"http://{worker.metrics_address}/metrics", headers=headers) as response:
                if response.status != 200:
                    return response.status, None
                worker.up = True
                return 200, await response.text()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return 0, None  # starting, or restarting: agentdbg_worker_up says so


def render(texts: dict[int, str], workers: list[Worker]) -> bytes:
    """One exposition of every worker's metrics, each sample labelled with its worker."""
    families: dict[str, Metric] = {}
    for index, text in sorted(texts.items()):
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            merged.samples.extend(Sample(s.name, {**s.labels, "worker": str(index)}, s.value, s.timestamp, s.exemplar)
                                  for s in family.samples)
    up = GaugeMetricFamily("agentdbg_worker_up", "1 when the worker's own /metrics answered this scrape.",
                           labels=["worker"])
    restarts = CounterMetricFamily("agentdbg_worker_restarts", "Times the supervisor started a worker again "
                                   "after it exited.", labels=["worker"])
    for worker in workers:
        up.add_metric([str(worker.index)], 1.0 if worker.up else 0.0)
        restarts.add_metric([str(worker.index)], worker.restarts)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([*families.values(), up, restarts]))
    return generate_latest(registry)


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def supervise(sources: list[str], config: ResolvedConfig) -> int:
    """`agentdbg run` with `service.workers` > 1."""
    from pipeline.telemetry import logs

    logs.setup(config.service.telemetry.logs.level, config.service.telemetry.logs.encoding)
    return asyncio.run(Supervisor(sources, config).run())


def worker_config(config: ResolvedConfig) -> ResolvedConfig:
    """In a worker process, its share of `config`; anywhere else `config` as it is."""
    worker = current()
    if worker is None:
        return config
    return for_worker(config, worker[0], worker[1], os.environ.get(METRICS_ENV))


__all__ = ["check", "current", "for_worker", "render", "supervise", "worker_config"]

"""Build and run the component graph from a resolved config.

receivers → (per pipeline) processors → fan-out → exporters. Receivers, exporters,
connectors and extensions are one instance per id (exporters: per id and signal) shared by
every pipeline that names them; processors are one instance per pipeline, as in otelcol.
Before a processor starts, the host tells it its pipeline and whether an exporter of that
pipeline keeps a persistent sending queue (`Host.downstream`).
A connector ends some pipelines (as an exporter) and starts others (as a receiver).

On reload a new graph is built beside the old one, reusing every receiver, exporter and
extension whose config did not change: a reused receiver keeps its sockets and is only
re-pointed, a reused exporter keeps its queue. A connector is rebuilt when its config
changed, but takes the windowed state of the one it replaces.
"""
from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import AbstractSet, Any, Iterable, Mapping, TypeVar

from pydantic import BaseModel

from pipeline import processorhelper
from pipeline.component import (
    Component,
    ComponentID,
    Connector,
    Consumer,
    Exporter,
    Kind,
    Processor,
    Receiver,
    Settings,
    Signal,
)
from pipeline.config.resolve import Pipeline, ResolvedConfig
from pipeline.contracts import PartitionedSource, PartitionedState, QueueOwner
from pipeline.errors import ConfigErrors
from pipeline.fanout import FanOut
from pipeline.host import Downstream, Host

log = logging.getLogger("agentdbg.service")

ExporterKey = tuple[ComponentID, Signal]
C = TypeVar("C", bound=Component)
K = TypeVar("K")


class Graph:
    def __init__(self, config: ResolvedConfig, previous: "Graph | None" = None) -> None:
        self.config = config
        self.reused: set[int] = set()
        self.built_from: dict[int, BaseModel] = {}  # id(component) → the config it was built from
        self.extensions: dict[ComponentID, Component] = {}
        self.exporters: dict[ExporterKey, Exporter] = {}
        self.connectors: dict[ComponentID, Connector] = {}
        self.receivers: dict[ComponentID, Receiver] = {}
        # Processors of pipelines fed by real receivers first, then those fed by connectors,
        # so that shutdown flushes upstream stages before the stages they feed.
        self.processors: list[Processor] = []
        self._downstream_processors: list[Processor] = []
        self._processor_downstream: list[tuple[Processor, Downstream]] = []
        self.entries: dict[str, Consumer] = {}  # each pipeline's first stage, by pipeline name
        self._build(previous)

    # -- building ------------------------------------------------------------------------------
    def _reuse_or_create(self, previous_map: Mapping[K, C] | None, key: K, kind: Kind,
                         cid: ComponentID, signal: Signal | None, expected: type[C]) -> C:
        component_config = self.config.section(kind)[cid]
        old = previous_map.get(key) if previous_map else None
        if old is not None and self._previous_configs.get(id(old)) == component_config.config:
            self.reused.add(id(old))
            self.built_from[id(old)] = component_config.config
            return old
        component = component_config.factory.create(Settings.make(kind, cid, signal), component_config.config)
        if not isinstance(component, expected):  # a factory registered under the wrong kind
            raise TypeError(f"the {kind.value} factory {cid.type!r} built a {type(component).__name__}, "
                            f"not a {expected.__name__}")
        self.built_from[id(component)] = component_config.config
        if isinstance(old, Connector) and isinstance(component, Connector):
            component.take_state_from(old)
        return component

    def _build(self, previous: "Graph | None") -> None:
        self._previous_configs = previous.built_from if previous else {}
        for name in self.config.service.extensions:
            cid = ComponentID.parse(name)
            self.extensions[cid] = self._reuse_or_create(
                previous.extensions if previous else None, cid, Kind.EXTENSION, cid, None, Component)
        for cid in self.config.section(Kind.CONNECTOR):
            self.connectors[cid] = self._reuse_or_create(
                previous.connectors if previous else None, cid, Kind.CONNECTOR, cid, None, Connector)
        for pipeline in self.config.pipelines:
            self.entries[pipeline.name] = self._build_pipeline(pipeline, previous)
        self.processors.extend(self._downstream_processors)
        self._wire_receivers(previous)

    def _exporter(self, cid: ComponentID, signal: Signal, previous: "Graph | None") -> Exporter | Connector:
        if cid in self.connectors:
            return self.connectors[cid]
        key = (cid, signal)
        if key not in self.exporters:
            self.exporters[key] = self._reuse_or_create(
                previous.exporters if previous else None, key, Kind.EXPORTER, cid, signal, Exporter)
        return self.exporters[key]

    def _build_pipeline(self, pipeline: Pipeline, previous: "Graph | None") -> Consumer:
        """The pipeline's entry: its first processor (counted by `processorhelper`) or its fan-out."""
        consumer: Consumer = FanOut([self._exporter(cid, pipeline.signal, previous) for cid in pipeline.exporters])
        built: list[Processor] = []
        for cid in reversed(pipeline.processors):
            component_config = self.config.section(Kind.PROCESSOR)[cid]
            settings = Settings.make(Kind.PROCESSOR, cid, pipeline.signal)
            settings.logger = logging.getLogger(f"agentdbg.processor.{cid}.{pipeline.name}")
            processor, consumer = processorhelper.build(
                settings, consumer, partial(component_config.factory.create, settings, component_config.config))
            built.append(processor)
        downstream = Downstream(pipeline.name, self.persistent_storage(pipeline))
        self._processor_downstream.extend((processor, downstream) for processor in built)
        fed_by_connector = any(cid in self.connectors for cid in pipeline.receivers)
        (self._downstream_processors if fed_by_connector else self.processors).extend(reversed(built))
        return consumer

    def persistent_storage(self, pipeline: Pipeline) -> str | None:
        """The storage of the first exporter of `pipeline` whose sending queue is on disk."""
        for cid in pipeline.exporters:
            exporter = self.exporters.get((cid, pipeline.signal))
            if isinstance(exporter, QueueOwner) and exporter.persistent_storage:
                return exporter.persistent_storage
        return None

    def _wire_receivers(self, previous: "Graph | None") -> None:
        by_receiver: dict[tuple[ComponentID, Signal], list[Consumer]] = {}
        for pipeline in self.config.pipelines:
            for cid in pipeline.receivers:
                by_receiver.setdefault((cid, pipeline.signal), []).append(self.entries[pipeline.name])
        for cid, signal in by_receiver:
            if cid not in self.receivers and cid not in self.connectors:
                self.receivers[cid] = self._reuse_or_create(
                    previous.receivers if previous else None, cid, Kind.RECEIVER, cid, None, Receiver)
            receiver = self.connectors.get(cid) or self.receivers[cid]
            if not receiver.accepts(signal):
                raise ConfigErrors([f"service::pipelines: receiver \"{cid}\" cannot feed a {signal.value} "
                                    "pipeline with its configured encoding"])
        self._receiver_consumers = {key: FanOut(entries, clone=True) for key, entries in by_receiver.items()}
        self._hand_partitioned_state()

    def _hand_partitioned_state(self) -> None:
        """Tell each keyed Kafka receiver which stateful connectors its pipelines end in
        (pipeline.contracts.PartitionedState: their state follows its partitions)."""
        for cid, receiver in self.receivers.items():
            if not isinstance(receiver, PartitionedSource):
                continue
            owners = [self.connectors[exporter] for p in self.config.pipelines if cid in p.receivers
                      for exporter in p.exporters if isinstance(self.connectors.get(exporter), PartitionedState)]
            receiver.set_partitioned_state(owners)  # type: ignore[arg-type]

    def connect_receivers(self) -> None:
        for (cid, signal), consumer in self._receiver_consumers.items():
            (self.connectors.get(cid) or self.receivers[cid]).set_consumer(signal, consumer)

    # -- lifecycle ------------------------------------------------------------------------------
    def _new(self, components: Iterable[C]) -> list[C]:
        return [c for c in components if id(c) not in self.reused]

    async def start(self, host: Host) -> None:
        """Start everything not reused, downstream first; receivers last."""
        for component in self._new(self.extensions.values()):
            await component.start(host)
        host.extensions = {str(cid): component for cid, component in self.extensions.items()}
        await self.start_pipelines(host)
        for component in self._new(self.receivers.values()):
            await component.start(host)

    async def start_pipelines(self, host: Host) -> None:
        """Exporters, processors and connectors, wired to their consumers; not the receivers."""
        for exporter in self._new(self.exporters.values()):
            await exporter.start(host)
        for processor, downstream in self._processor_downstream:
            host.set_downstream(processor, downstream)
        for processor in reversed(self._new(self.processors)):
            await processor.start(host)
        self.connect_receivers()
        for connector in self._new(self.connectors.values()):
            await connector.start(host)

    async def shutdown(self, deadline: float, keep: AbstractSet[int] = frozenset()) -> None:
        """Stop receivers, flush processors and connectors upstream first, drain exporters.

        Components whose id() is in `keep` (reused by a newer graph) are left running.
        """
        await self.stop_receivers(keep)
        upstream = [p for p in self.processors if p not in self._downstream_processors]
        for processor in upstream:
            await _stop(processor, deadline)
        for connector in self.connectors.values():
            if id(connector) not in keep:
                await _stop(connector, deadline)
        for processor in self._downstream_processors:
            await _stop(processor, deadline)
        await asyncio.gather(*(_stop(c, deadline) for c in self.exporters.values() if id(c) not in keep))
        for component in self.extensions.values():
            if id(component) not in keep:
                await _stop(component, deadline)

    async def stop_receivers(self, keep: AbstractSet[int] = frozenset()) -> None:
        for component in self.receivers.values():
            if id(component) not in keep:
                await component.shutdown(time.monotonic() + 5.0)

    def describe(self) -> dict[str, Any]:
        return {
            "pipelines": {p.name: {"receivers": [str(c) for c in p.receivers],
                                   "processors": [str(c) for c in p.processors],
                                   "exporters": [str(c) for c in p.exporters]}
                          for p in self.config.pipelines},
        }


async def _stop(component: Component, deadline: float) -> None:
    try:
        # A little past the deadline: the component itself counts what it could not finish.
        await asyncio.wait_for(component.shutdown(deadline), max(0.1, deadline - time.monotonic()) + 2.0)
    except Exception:
        log.exception("component did not shut down cleanly", extra={"kv": {"component": str(component.id)}})

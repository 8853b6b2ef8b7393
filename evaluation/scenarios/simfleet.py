"""A healthy agent fleet over simulated time: `SimFleet.second(t)` gives the batches of second t.

It extends `testkit.fleet.Fleet` (same seeded id source and attribute helper) with what
a scenario needs and the benchmark load does not: simulated time instead of the wall clock,
per-service profiles (`profiles.py`), Poisson arrivals, nested workers, conversations with
legitimate repeated tool calls and retries, occasional single timeouts, canary instances,
and OTLP metrics (memory, CPU) every `metrics_interval`.

Spans are exported the way an SDK's batch processor does it: each span shortly after it
ends (a per-trace delay of 0.1-1 s), so a long trace's children arrive before its root.

Every random draw that shapes behaviour goes through a hook method (`rate`, `chat_seconds`,
`tool_seconds`, `span_fails`, `http_outcome`, `input_tokens`, `model`, `blocked_seconds`,
`memory_bytes`, `cpu_ratio`, `loop_calls`), so `faults.FaultyFleet` can change one behaviour
of one subject for a while and leave everything else as the same seed makes it.
"""
from __future__ import annotations

import calendar
import math
from dataclasses import dataclass, field

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from testkit.fleet import Fleet, kv
from evaluation.scenarios.profiles import STANDARD, ServiceProfile, Tool
from pipeline.pdata.metrics import Metrics
from pipeline.pdata.traces import Traces

# 09:00 UTC: a scenario of a few hours never crosses a UTC day, so daily budgets do not roll over.
SIM_START = float(calendar.timegm((2026, 6, 1, 9, 0, 0)))
SERVER, CLIENT, INTERNAL = Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_INTERNAL
ERROR = Status.STATUS_CODE_ERROR
TIMEOUT_TYPE = "httpx.ReadTimeout"  # what the httpx instrumentation records as error.type
REPEAT_CHANCE = 0.3  # an agent re-issues its last call of a tool (re-reads a file, re-runs a query)


@dataclass
class Instance:
    """One process of a service: a resource of its own and its memory/CPU state."""

    profile: ServiceProfile
    version: str
    canary: bool
    instance_id: str
    resource: Resource
    gc_period: float
    gc_phase: float
    spike_left: int = 0
    cooling: bool = False  # the reading after a spike is a normal one


@dataclass
class Session:
    """Identical-call tallies of one conversation (or one trace when there is none)."""

    conversation: str | None
    turns_left: int
    tallies: dict[tuple[str, str], int] = field(default_factory=dict)
    last_args: dict[str, str] = field(default_factory=dict)


@dataclass
class Invocation:
    profile: ServiceProfile
    instance: Instance
    trace_id: bytes
    session: Session
    spans: list[Span] = field(default_factory=list)
    waited: bool = False

    @property
    def conversation_attrs(self) -> list:
        conversation = self.session.conversation
        return [kv("gen_ai.conversation.id", conversation)] if conversation else []


@dataclass
class SimFleet(Fleet):
    profiles: tuple[ServiceProfile, ...] = STANDARD
    start_s: float = SIM_START
    metrics_interval: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.start_ns = int(self.start_s * 1e9)
        self.instances: dict[str, list[Instance]] = {p.service: self._instances(p) for p in self.profiles}
        self.pending: dict[int, dict[str, tuple[Instance, list[Span]]]] = {}
        self.conversations: dict[str, list[Session]] = {p.service: [] for p in self.profiles}
        self.fresh_args = 0

    def _instances(self, profile: ServiceProfile) -> list[Instance]:
        out = [self._instance(profile, profile.version, False)]
        if profile.canary_version:
            out.append(self._instance(profile, profile.canary_version, True))
        return out

    def _instance(self, profile: ServiceProfile, version: str, canary: bool) -> Instance:
        instance_id = f"{profile.service}-{self._id(3).hex()}"
        resource = Resource()
        resource.attributes.extend([kv("service.name", profile.service), kv("service.version", version),
                                    kv("service.instance.id", instance_id), kv("deployment.environment", "prod")])
        if canary:
            resource.attributes.append(kv("deployment.canary", "true"))
        return Instance(profile, version, canary, instance_id, resource, self.rng.uniform(60, 120),
                        self.rng.uniform(0, 120))

    # -- the simulated second --------------------------------------------------------------------
    def second(self, t: int) -> tuple[Traces | None, Metrics | None]:
        """Start the invocations of (t-1, t], and return the spans due for export by t (received
        at t) and, every metrics_interval, the processes' memory and CPU readings."""
        now = self.start_s + t
        for profile in self.profiles:
            for _ in range(self._poisson(self.rate(profile, now - 1))):
                self.invoke(profile, now - 1 + self.rng.random())
        due = self.pending.pop(t, None)
        traces = Traces.from_message(self._request(due), received_at=now) if due else None
        metrics = self._metrics(now) if t % self.metrics_interval == 0 else None
        return traces, metrics

    def _poisson(self, lam: float) -> int:
        limit, k, p = math.exp(-lam), 0, self.rng.random()
        while p > limit:
            k += 1
            p *= self.rng.random()
        return k

    def _request(self, due: dict[str, tuple[Instance, list[Span]]]) -> ExportTraceServiceRequest:
        request = ExportTraceServiceRequest()
        for instance, spans in due.values():
            rs = request.resource_spans.add()
            rs.resource.CopyFrom(instance.resource)
            scope = rs.scope_spans.add()
            scope.scope.name, scope.scope.version = "agentdbg.scenarios", "1.0"
            scope.spans.extend(spans)
        return request

    def _export(self, invocation: Invocation) -> None:
        """Queue each span for the batch of the second after it ended plus the SDK's delay."""
        delay = self.rng.uniform(0.1, 1.0)
        instance = invocation.instance
        for span in invocation.spans:
            due = math.ceil(span.end_time_unix_nano / 1e9 + delay - self.start_s)
            slot = self.pending.setdefault(due, {}).setdefault(instance.instance_id, (instance, []))
            slot[1].append(span)

    # -- one invocation --------------------------------------------------------------------------
    def invoke(self, profile: ServiceProfile, begin: float) -> Invocation:
        instances = self.instances[profile.service]
        instance = instances[-1] if len(instances) > 1 and self.rng.random() < profile.canary_share else instances[0]
        invocation = Invocation(profile, instance, self._id(16), self._session(profile))
        root_id = self._id(8)
        cursor = begin + self._gap()
        if profile.workers[1]:
            for _ in range(self.rng.randint(*profile.workers)):
                cursor = self._worker(invocation, root_id, cursor) + self._gap()
        else:
            cursor = self._steps(invocation, root_id, cursor)
        cursor = self.loop_calls(invocation, root_id, cursor)
        failed = self.rng.random() < profile.error_rate or self.span_fails(profile, cursor)
        root = self._span(invocation, profile.root_name, SERVER, begin, cursor + self._gap(), parent=b"",
                          span_id=root_id, error="AgentError" if failed else None,
                          attrs=[kv("gen_ai.operation.name", "invoke_agent"), kv("gen_ai.agent.name", profile.agent),
                                 kv("gen_ai.agent.id", f"{profile.agent}-1")])
        invocation.spans.append(root)
        self._export(invocation)
        return invocation

    def _gap(self) -> float:
        """An agent's own time between its children (framework overhead, parsing)."""
        return self.rng.uniform(0.005, 0.05)

    def _worker(self, invocation: Invocation, parent: bytes, start: float) -> float:
        worker_id = self._id(8)
        end = self._steps(invocation, worker_id, start + self._gap())
        invocation.spans.append(self._span(
            invocation, "invoke_agent worker", INTERNAL, start, end + self._gap(), parent=parent, span_id=worker_id,
            attrs=[kv("gen_ai.operation.name", "invoke_agent"), kv("gen_ai.agent.name", "worker")]))
        return end + self._gap()

    def _steps(self, invocation: Invocation, parent: bytes, cursor: float) -> float:
        profile = invocation.profile
        for _ in range(self.rng.randint(*profile.chats)):
            cursor = self._chat(invocation, parent, cursor) + self._gap()
            if not invocation.waited:  # after its first LLM call, as an agent would wait on a lock
                invocation.waited = True
                cursor += self.blocked_seconds(profile, cursor)
            for _ in range(self.rng.randint(*profile.tools_per_chat)):
                tool = self.rng.choice(profile.tools)
                cursor = self.tool_call(invocation, parent, cursor, tool, self._arguments(invocation, tool))
        return cursor

    def _session(self, profile: ServiceProfile) -> Session:
        if profile.conversation_turns <= 1:
            return Session(None, 0)
        pool = self.conversations[profile.service]
        pool[:] = [s for s in pool if s.turns_left > 0]
        if pool and self.rng.random() < 1 - 1 / profile.conversation_turns:
            session = self.rng.choice(pool)
        else:
            turns = max(1, round(self.rng.expovariate(1 / profile.conversation_turns)))
            session = Session(f"conv-{self._id(8).hex()}", turns)
            pool.append(session)
        session.turns_left -= 1
        return session

    def _arguments(self, invocation: Invocation, tool: Tool) -> str:
        """The tool's arguments: sometimes the same as its last call in the session, never more
        than `max_repeats` identical calls in one session (beyond that an agent is looping)."""
        session, cap = invocation.session, invocation.profile.max_repeats
        last = session.last_args.get(tool.name)
        if last is not None and self.rng.random() < REPEAT_CHANCE and session.tallies.get((tool.name, last), 0) < cap:
            return last
        args = f'{{"arg": {self.rng.randrange(tool.arg_space)}}}'
        if session.tallies.get((tool.name, args), 0) >= cap:
            self.fresh_args += 1
            args = f'{{"arg": "fresh-{self.fresh_args}"}}'
        return args

    def _chat(self, invocation: Invocation, parent: bytes, start: float) -> float:
        profile = invocation.profile
        provider, model = self.model(profile, start)
        end = start + self.chat_seconds(profile, start)
        failed = self.span_fails(profile, start)
        invocation.spans.append(self._span(
            invocation, f"chat {model}", CLIENT, start, end, parent=parent, error="ProviderError" if failed else None,
            attrs=[kv("gen_ai.operation.name", "chat"), kv("gen_ai.provider.name", provider),
                   kv("gen_ai.request.model", model), kv("gen_ai.response.model", model),
                   kv("gen_ai.agent.name", profile.agent),
                   kv("gen_ai.usage.input_tokens", self.input_tokens(profile, start)),
                   kv("gen_ai.usage.output_tokens", int(self.rng.lognormvariate(math.log(profile.output_tokens), 0.6))),
                   kv("server.address", f"api.{provider}.example")]))
        return end

    def tool_call(self, invocation: Invocation, parent: bytes, start: float, tool: Tool, args: str,
                  retry: bool = True) -> float:
        """An execute_tool span (and its HTTP call); a failed call is retried once with the same
        arguments, as agent frameworks do, while the session's repeat cap allows."""
        profile, session = invocation.profile, invocation.session
        key = (tool.name, args)
        session.tallies[key] = session.tallies.get(key, 0) + 1
        session.last_args[tool.name] = args
        tool_id = self._id(8)
        work_start = start + 0.002
        outcome = self.http_outcome(profile, tool, start) if tool.dependency else "ok"
        seconds = profile.timeout_s if outcome == "timeout" else self.tool_seconds(profile, tool, start)
        work_end = work_start + seconds
        error = {"timeout": TIMEOUT_TYPE, "error": "500"}.get(outcome)
        if tool.dependency:
            http_attrs = [kv("http.request.method", "POST"), kv("server.address", tool.dependency),
                          kv("peer.service", tool.dependency)]
            if outcome != "timeout":
                http_attrs.append(kv("http.response.status_code", 500 if outcome == "error" else 200))
            invocation.spans.append(self._span(invocation, "POST", CLIENT, work_start, work_end, parent=tool_id,
                                               error=error, attrs=http_attrs, conversation=False))
        if error is None and self.span_fails(profile, start):
            error = "ToolError"
        end = work_end + 0.002
        invocation.spans.append(self._span(
            invocation, f"execute_tool {tool.name}", INTERNAL, start, end, parent=parent, span_id=tool_id, error=error,
            attrs=[kv("gen_ai.operation.name", "execute_tool"), kv("gen_ai.tool.name", tool.name),
                   kv("gen_ai.agent.name", profile.agent), kv("gen_ai.tool.call.id", tool_id.hex()),
                   kv("gen_ai.tool.call.arguments", args)]))
        end += self._gap()
        if error in (TIMEOUT_TYPE, "500") and retry and session.tallies[key] < profile.max_repeats:
            end = self.tool_call(invocation, parent, end, tool, args, retry=False)
        return end

    def _span(self, invocation: Invocation, name: str, kind: int, start: float, end: float, *, parent: bytes,
              span_id: bytes | None = None, error: str | None = None, attrs: list, conversation: bool = True) -> Span:
        span = Span(trace_id=invocation.trace_id, span_id=span_id or self._id(8), parent_span_id=parent, name=name,
                    kind=kind, start_time_unix_nano=int(start * 1e9), end_time_unix_nano=int(end * 1e9))
        span.attributes.extend(attrs)
        if conversation:  # frameworks put the conversation on their GenAI spans, not on HTTP ones
            span.attributes.extend(invocation.conversation_attrs)
        if error is not None:
            span.attributes.append(kv("error.type", error))
            span.status.CopyFrom(Status(code=ERROR, message="timed out" if error == TIMEOUT_TYPE else error))
        return span

    # -- metrics ---------------------------------------------------------------------------------
    def _metrics(self, now: float) -> Metrics:
        request = ExportMetricsServiceRequest()
        t_ns = int(now * 1e9)
        for instances in self.instances.values():
            for instance in instances:
                rm = request.resource_metrics.add()
                rm.resource.CopyFrom(instance.resource)
                scope = rm.scope_metrics.add()
                scope.scope.name = "opentelemetry.instrumentation.system_metrics"
                memory = scope.metrics.add(name="process.memory.usage", unit="By")
                memory.gauge.data_points.add(time_unix_nano=t_ns, as_int=int(self.memory_bytes(instance, now)))
                cpu = scope.metrics.add(name="process.cpu.utilization", unit="1")
                cpu.gauge.data_points.add(time_unix_nano=t_ns, as_double=self.cpu_ratio(instance, now))
        return Metrics.from_message(request, received_at=now)

    # -- hooks: the healthy behaviour, which faults.FaultyFleet overrides per subject and time ----
    def rate(self, profile: ServiceProfile, t: float) -> float:
        factor = 1.0
        for burst in profile.bursts:
            if burst.start <= t - self.start_s < burst.start + burst.duration:
                factor = burst.factor
        return profile.rate * factor

    def model(self, profile: ServiceProfile, t: float) -> tuple[str, str]:
        return profile.provider, profile.model

    def chat_seconds(self, profile: ServiceProfile, t: float) -> float:
        return self.rng.lognormvariate(math.log(profile.chat_median_s), 0.5)

    def tool_seconds(self, profile: ServiceProfile, tool: Tool, t: float) -> float:
        return self.rng.lognormvariate(math.log(tool.median_s), tool.sigma)

    def span_fails(self, profile: ServiceProfile, t: float) -> bool:
        return profile.span_error_rate > 0 and self.rng.random() < profile.span_error_rate

    def http_outcome(self, profile: ServiceProfile, tool: Tool, t: float) -> str:
        draw = self.rng.random()
        if draw < profile.timeout_rate:
            return "timeout"
        return "error" if draw < profile.timeout_rate + profile.error_rate else "ok"

    def input_tokens(self, profile: ServiceProfile, t: float) -> int:
        if profile.context_window and self.rng.random() < profile.long_context_rate:
            return int(profile.context_window * self.rng.uniform(0.6, 0.85))  # long-context RAG: big but fits
        tokens = int(self.rng.lognormvariate(math.log(profile.input_tokens), 0.6))
        return min(tokens, int(profile.context_window * 0.5)) if profile.context_window else tokens

    def blocked_seconds(self, profile: ServiceProfile, t: float) -> float:
        """Time the agent waits on something no span covers before it starts working."""
        return 0.0

    def loop_calls(self, invocation: Invocation, parent: bytes, cursor: float) -> float:
        """Extra tool calls at the end of an invocation (none when healthy)."""
        return cursor

    def memory_bytes(self, instance: Instance, t: float) -> float:
        profile = instance.profile
        sawtooth = profile.gc_sawtooth_mb * (((t - self.start_s + instance.gc_phase) % instance.gc_period)
                                             / instance.gc_period)
        return (profile.memory_mb + sawtooth + self.rng.gauss(0, profile.memory_noise_mb)) * 1e6

    def cpu_ratio(self, instance: Instance, t: float) -> float:
        """CPU share, with the odd short spike (at most three readings in a row: 20 s, a busy
        moment, not a loop)."""
        usual = min(0.85, max(0.01, self.rng.gauss(instance.profile.cpu, 0.05)))
        if instance.cooling:
            instance.cooling = False
            return usual
        if instance.spike_left > 0 or self.rng.random() < instance.profile.cpu_spike_rate:
            instance.spike_left = (instance.spike_left or self.rng.randint(1, 3)) - 1
            instance.cooling = instance.spike_left == 0
            return self.rng.uniform(0.92, 0.96)
        return usual

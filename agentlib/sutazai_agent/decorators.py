"""`@instrument_agent(...)` on an agent class or function, and `@tool(...)` on a tool.

    @instrument_agent(trace_all=True, cost_tracking=True, session_replay=True)
    class MyAgent(BaseAgent): ...

Decorating calls `configure(...)` (with the options given here) and wraps the agent:
- its entry methods (`run`, `arun`, `invoke`, `ainvoke`, `__call__`, `chat`, `step`), or every
  public method with `trace_all=True`, each call in a span; the outermost call of an agent is its
  `invoke_agent <name>` span (`gen_ai.operation.name=invoke_agent`, `gen_ai.agent.name`), the
  calls it makes to its own methods are child spans named `<name>.<method>`. A function agent is
  one `invoke_agent` span per call. An exception sets the span's error status and `error.type`.
- `cost_tracking=True` turns on the installed LLM instrumentations (their spans carry the
  model and token usage the daemon prices); `False` leaves them off.
- `session_replay=True` asks those instrumentations to record prompts and completions
  (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`: `SPAN_AND_EVENT` where
  opentelemetry-util-genai is installed, else `true`; unless the variable is set), so
  the explorer can replay a session's conversation.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import inspect
import os
from typing import Any, Callable, Iterator, TypeVar

from opentelemetry.trace import Status, StatusCode

from sutazai_agent.calls import is_async
from sutazai_agent.telemetry import AGENT_NAME, OPERATION, configure, tracer

T = TypeVar("T")
ENTRY_METHODS = frozenset({"run", "arun", "invoke", "ainvoke", "__call__", "chat", "step"})
CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_inside_agent: contextvars.ContextVar[bool] = contextvars.ContextVar("sutazai_inside_agent", default=False)


def _span_for(agent: str, method: str | None) -> tuple[str, dict[str, Any], bool]:
    """(span name, attributes, whether it is the agent's outermost span) of one call."""
    if _inside_agent.get() and method is not None:
        return f"{agent}.{method}", {}, False
    return f"invoke_agent {agent}", {OPERATION: "invoke_agent", AGENT_NAME: agent}, True


@contextlib.contextmanager
def _call_span(name: str, attributes: dict[str, Any], outermost: bool) -> Iterator[None]:
    """One call's span; an exception sets its error status and `error.type`, and goes on."""
    token = _inside_agent.set(True) if outermost else None
    try:
        with tracer().start_as_current_span(name, attributes=attributes, record_exception=True,
                                            set_status_on_exception=False) as span:
            try:
                yield
            except Exception as exc:
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))
                raise
    finally:
        if token is not None:
            _inside_agent.reset(token)


def _traced(fn: Callable[..., Any], agent: str, method: str | None, operation: str | None = None,
            attributes: dict[str, Any] | None = None) -> Callable[..., Any]:
    """`fn` with each call in a span: an agent's (`operation` None) or a tool's."""
    def names() -> tuple[str, dict[str, Any], bool]:
        if operation is None:
            return _span_for(agent, method)
        return f"{operation} {agent}", {OPERATION: operation, **(attributes or {})}, False

    if is_async(fn):
        @functools.wraps(fn)
        async def traced_async(*args: Any, **kwargs: Any) -> Any:
            with _call_span(*names()):
                return await fn(*args, **kwargs)
        return traced_async

    @functools.wraps(fn)
    def traced(*args: Any, **kwargs: Any) -> Any:
        with _call_span(*names()):
            return fn(*args, **kwargs)
    return traced


def _capture_value() -> str:
    """The variable's "on": the GenAI utilities (opentelemetry-util-genai) name a mode, older
    instrumentations read "true"."""
    try:
        found = importlib.util.find_spec("opentelemetry.util.genai") is not None
    except ModuleNotFoundError:
        found = False
    return "SPAN_AND_EVENT" if found else "true"


def instrument_agent(trace_all: bool = True, cost_tracking: bool = True, session_replay: bool = True,
                     name: str | None = None, **configure_options: Any) -> Callable[[T], T]:
    """Decorate an agent class or function; see the module docstring. `configure_options` go to
    `configure` (service_name, endpoint, debug_url, ...)."""
    def decorate(agent: T) -> T:
        agent_name = str(name or getattr(agent, "__name__", "agent"))
        if session_replay:
            os.environ.setdefault(CAPTURE_CONTENT, _capture_value())
        configure_options.setdefault("agent_name", agent_name)
        configure(instrument=cost_tracking, **configure_options)
        if inspect.isclass(agent):
            for attr, member in list(vars(agent).items()):
                wanted = attr in ENTRY_METHODS or (trace_all and not attr.startswith("_"))
                if wanted and inspect.isfunction(member):
                    setattr(agent, attr, _traced(member, agent_name, attr))
            return agent
        return _traced(agent, agent_name, None)  # type: ignore[arg-type, return-value]
    return decorate


def tool(name: str | None = None, **attributes: Any) -> Callable[[T], T]:
    """Each call of the decorated function is an `execute_tool <name>` span (`gen_ai.tool.name`)."""
    def decorate(fn: T) -> T:
        tool_name = str(name or getattr(fn, "__name__", "tool"))
        attrs = {"gen_ai.tool.name": tool_name, **attributes}
        return _traced(fn, tool_name, None, "execute_tool", attrs)  # type: ignore[arg-type, return-value]
    return decorate

"""What the breaker and the throttle share: handing a function the model to use, and telling
sync from async functions."""
from __future__ import annotations

import inspect
from typing import Any, Callable


def takes_model(fn: Callable[..., Any]) -> bool:
    """Whether `fn` accepts a `model` keyword (then the tier's model is passed to it)."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "model" in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def with_model(kwargs: dict[str, Any], model: str | None, passes_model: bool) -> dict[str, Any]:
    """`kwargs` with `model` set, when there is a model to switch to and `fn` takes it."""
    return {**kwargs, "model": model} if model is not None and passes_model else kwargs


def is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn)

"""`lazy`: an attribute computed on first read and then stored on the instance.

Used by the batch types and their columnar views (pipeline/pdata/), whose columns are each
built once per batch by whichever reader asks first.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar, overload

T = TypeVar("T")


class lazy(Generic[T]):  # noqa: N801 - used like functools.cached_property
    """A computed-once attribute, without `functools.cached_property`'s lock.

    Python 3.11's cached_property takes one lock per property shared by every instance, so an
    exporter building one batch's columns in a worker thread would stall the event loop's
    reads of another batch. Two threads racing here both compute and one result wins: same
    values, no harm. The instance needs a `__dict__` (no `__slots__`).
    """

    def __init__(self, func: Callable[[Any], T]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> lazy[T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = self.func(obj)
        obj.__dict__[self.name] = value
        return value

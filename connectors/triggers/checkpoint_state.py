"""Detector state per subject key, as plain JSON values: what a checkpoint stores.

A detector names the containers it keeps per subject (`Detector.state_parts`: a window of
sums, a dict of examples, a dict of baselines ...), each wrapped in a `Part` that turns its
values into JSON values and back. From those the detector's state is read and written per
key: `gather` gives `{key: {part: value}}` (one changelog record per key), `scatter` merges
such entries back (a restart, or the partitions a rebalance assigned), `drop` forgets keys
(the partitions a rebalance took away).

Keys are hashable values made of text and numbers (a service name, a (service, dependency)
tuple); `key_text` writes one as compact JSON, `key_of` reads it back (arrays become tuples).
"""
from __future__ import annotations

from typing import Any, Callable, Generic, Hashable, Iterable, Mapping, Protocol, TypeVar

import orjson

from connectors.triggers.event import Examples

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Part(Protocol):
    """One per-key container of a detector's state."""

    def export(self) -> dict[Any, Any]:
        """`{key: JSON value}` of every key held."""
        ...

    def load(self, values: Mapping[Any, Any]) -> None:
        """Merge `{key: JSON value}` (as `export` wrote it) into the container."""
        ...

    def forget(self, key: Any) -> None:
        """Drop `key`, if held."""
        ...


class DictPart(Generic[K, V]):
    """A dict of per-key values, with the functions that write one as JSON and read it back
    (and, for keys of a named-tuple type, the one that makes a key from its plain tuple)."""

    def __init__(self, data: dict[K, V], dump: Callable[[V], Any], load: Callable[[Any], V],
                 key: Callable[[Any], K] | None = None) -> None:
        self.data, self._dump, self._load, self._key = data, dump, load, key

    def export(self) -> dict[Any, Any]:
        dump = self._dump
        return {key: dump(value) for key, value in self.data.items()}

    def load(self, values: Mapping[Any, Any]) -> None:
        read, key_of = self._load, self._key
        self.data.update((key_of(key) if key_of else key, read(value)) for key, value in values.items())

    def forget(self, key: Any) -> None:
        self.data.pop(key, None)


class SetPart(Generic[K]):
    """A set of keys (a flag per key)."""

    def __init__(self, data: set[K]) -> None:
        self.data = data

    def export(self) -> dict[Any, Any]:
        return dict.fromkeys(self.data, 1)

    def load(self, values: Mapping[Any, Any]) -> None:
        self.data.update(values)

    def forget(self, key: Any) -> None:
        self.data.discard(key)


def dump_examples(examples: Examples) -> list[list[str]]:
    return [[_hex(t), _hex(s)] for t, s in examples.pairs]


def load_examples(value: Any) -> Examples:
    return Examples([(bytes.fromhex(t), bytes.fromhex(s)) for t, s in value])


def examples_part(data: dict[Any, Examples], key: Callable[[Any], Any] | None = None) -> DictPart[Any, Examples]:
    return DictPart(data, dump_examples, load_examples, key)


def slot_values(item: Any) -> list[Any]:
    """The values of an object's `__slots__`, in order (numbers, text, None, pairs)."""
    return [getattr(item, name) for name in type(item).__slots__]


def from_slots(cls: type[V], values: list[Any]) -> V:
    """An object of `cls` (built without arguments) with its `__slots__` set from `slot_values`;
    JSON arrays come back as tuples."""
    item = cls()
    for name, value in zip(cls.__slots__, values):  # type: ignore[attr-defined]
        setattr(item, name, tuple(value) if isinstance(value, list) else value)
    return item


def _hex(value: bytes | str) -> str:
    return value.hex() if isinstance(value, bytes) else value


def gather(parts: Mapping[str, Part]) -> dict[Any, dict[str, Any]]:
    """`{key: {part name: JSON value}}` over every part."""
    out: dict[Any, dict[str, Any]] = {}
    for name, part in parts.items():
        for key, value in part.export().items():
            out.setdefault(key, {})[name] = value
    return out


def scatter(parts: Mapping[str, Part], entries: Mapping[Any, Mapping[str, Any]]) -> None:
    """Merge `gather`'s entries into the parts (a part name no part has is ignored)."""
    for name, part in parts.items():
        values = {key: state[name] for key, state in entries.items() if name in state}
        if values:
            part.load(values)


def drop(parts: Mapping[str, Part], keys: Iterable[Any]) -> None:
    keys = list(keys)
    for part in parts.values():
        for key in keys:
            part.forget(key)


def key_text(key: Hashable) -> str:
    return orjson.dumps(key, default=_plain).decode()


def _plain(value: Any) -> Any:
    """orjson writes tuples but not their subclasses (named tuples such as `Origin`): as arrays."""
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not a checkpoint key part")


def key_of(text: str) -> Any:
    return _tuples(orjson.loads(text))


def _tuples(value: Any) -> Any:
    return tuple(map(_tuples, value)) if isinstance(value, list) else value

"""Types of the compiled hot path (native/src/). Every function takes the encoded bytes of an
ExportTraceServiceRequest and raises ValueError on bytes it cannot read."""
from typing import Any

def columns(wire: bytes, /) -> tuple[Any, ...]:
    """The eager columns of pipeline/pdata/spans.py `SpanColumns.build`, in its order."""

def attribute_pass(wire: bytes, keys: frozenset[str] | set[str], maps: bool, /
                   ) -> tuple[list[dict[str, str]] | None, dict[str, dict[int, Any]]]:
    """Per span `{key: text}` (None unless `maps`), and `{key: {span index: typed value}}`."""

def nested(wire: bytes, /) -> tuple[list[Any], ...]:
    """Events (times, names, attribute maps) and links (trace ids, span ids, states, maps)."""

def splice(wire: bytes, inserts: list[tuple[int, bytes]], /) -> bytes:
    """The request with each insert's encoded Span fields appended to the span at its index."""

def format_double(value: float, /) -> str:
    """Go's strconv.FormatFloat(v, 'f', -1, 64)."""

class Picker:
    """The genai processor's attribute picking (processors/genai/processor.py)."""

    def __init__(self, wanted: frozenset[str] | set[str], scopes: frozenset[str] | set[str], /) -> None: ...
    def pick(self, wire: bytes, /) -> tuple[list[bytes], list[tuple[int, dict[str, Any], str, int, str | None, str]]]:
        """(every span's trace id, candidates as (index, attrs, name, status code, exception type, scope name))."""

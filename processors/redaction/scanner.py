"""Redaction of one string: the pre-check, the per-rule detectors, JSON-aware rewriting.

`Scanner.text(value)` returns the redacted string, or None when nothing in it matched (the
common case, decided by one RE2 search of every detector's candidate expression). Inside a string that looks like
JSON (`{...}` or `[...]`) and parses, every string in the document (keys too) is redacted on
its decoded text and the document is written back with orjson: still valid JSON, with the
same structure and numbers (whitespace is not kept). A string that does not parse is
redacted as plain text.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import orjson
import re2

from processors.redaction.config import RedactionConfig
from processors.redaction.detectors import RULES, Rule

BLOCKED_VALUES = "blocked_values"
BLOCKED_KEYS = "blocked_key_patterns"
NOT_ALLOWED = "allowed_keys"
OTELCOL_MASK = "****"
MAX_JSON_NESTING = 4  # JSON inside a JSON string inside ...: deeper levels are treated as text
_NORMALISE: dict[str, Callable[[str], str]] = {
    # Equal values hash equal however they were written.
    "card": lambda text: re.sub(r"\D", "", text),
    "phone": lambda text: "+" + re.sub(r"\D", "", text) if text.startswith("+") else re.sub(r"\D", "", text),
    "iban": lambda text: text.replace(" ", ""),
    "email": str.casefold,
}


@dataclass(frozen=True)
class Detector:
    name: str                      # the `rule` label of the redaction counter
    regex: re.Pattern[str]
    replace: Callable[[str], str]  # matched text → its replacement
    check: Callable[[str], int] | None = None
    group: int | str = 0
    candidate: Any = None          # RE2 over str: where `regex` may match (None: a user pattern)
    candidate_bytes: Any = None    # the same over ASCII bytes (offsets equal; no conversion per call)

    def matches(self, value: str, ascii_value: bytes | None, start: int = 0) -> Iterator[re.Match[str]]:
        """Every match of `regex`, left to right. With a candidate, RE2 finds each place the
        expression could match and Python's engine only confirms it there (anchored, its
        look-arounds seeing the text around): Python's own scan of a long prompt costs up to a
        microsecond a character for the class-led expressions, RE2's a few nanoseconds."""
        if self.candidate is None:
            yield from self.regex.finditer(value)
            return
        subject: str | bytes = value if ascii_value is None else ascii_value
        search = (self.candidate if ascii_value is None else self.candidate_bytes).search
        position, match = start, self.regex.match
        while True:
            found = search(subject, position)
            if found is None:
                return
            start = found.start()
            confirmed = match(value, start)
            if confirmed is None:
                position = start + 1  # a boundary failed here; a match may still start just after
                continue
            yield confirmed
            position = max(confirmed.end(), start + 1)


class Hasher:
    """Keyed HMAC-SHA256, hex, cut to `prefix` characters: `hmac:<hex>`."""

    def __init__(self, key: bytes, prefix: int) -> None:
        self.key, self.prefix = key, prefix

    def __call__(self, text: str) -> str:
        return "hmac:" + hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()[:self.prefix]


class Scanner:
    def __init__(self, config: RedactionConfig) -> None:
        key = config.hash_key.get_secret_value().encode() if config.hash_key else b""
        self.hasher = Hasher(key, config.hash_prefix_length)
        self.detectors = [self._detector(name, config) for name in RULES if name in config.detectors.enabled()]
        self.detectors += [Detector(BLOCKED_VALUES, re.compile(pattern), self.whole_replacer(config.mode_of(None)))
                           for pattern in config.blocked_values]
        self.allowed = [re.compile(pattern) for pattern in config.allowed_values]
        built_in = "|".join(f"(?:{RULES[d.name].candidate})" for d in self.detectors if d.candidate is not None)
        self.any_built_in = re2.compile(built_in) if built_in else None
        self.any_built_in_bytes = re2.compile(built_in.encode()) if built_in else None
        self.user = [d.regex for d in self.detectors if d.candidate is None]
        self.json = config.redact_json

    def _detector(self, name: str, config: RedactionConfig) -> Detector:
        rule = RULES[name]
        regex = rule.compiled()
        group = "secret" if "secret" in regex.groupindex else 0
        replace: Callable[[str], str]
        if config.mode_of(name) == "hash":
            normalise = _NORMALISE.get(name, lambda text: text)

            def replace(text: str) -> str:
                return self.hasher(normalise(text))
        elif "{last4}" in rule.mask:
            def replace(text: str) -> str:
                return rule.mask.format(last4=re.sub(r"\D", "", text)[-4:])
        else:
            def replace(text: str) -> str:
                return rule.mask
        return Detector(name, regex, replace, rule.check, group, re2.compile(rule.candidate),
                        re2.compile(rule.candidate.encode()))

    def whole_replacer(self, mode: str) -> Callable[[str], str]:
        """The replacement of a whole value or a blocked_values match: otelcol's mask, or the HMAC."""
        return self.hasher if mode == "hash" else (lambda text: OTELCOL_MASK)

    def wire_check(self) -> "WireCheck | None":
        """The candidates as a search over a whole batch's wire bytes; None when a user pattern is
        among them (its anchors and classes need not mean the same on bytes with protobuf
        framing between strings)."""
        names = [d.name for d in self.detectors]
        if not names or BLOCKED_VALUES in names:
            return None
        return WireCheck([RULES[name] for name in names])

    def text(self, value: str, hits: Counter[str], depth: int = 0) -> str | None:
        """`value` with every match replaced (counted in `hits` by rule), or None if none."""
        first = self.first_candidate(value)
        if first is None and not any(pattern.search(value) for pattern in self.user):
            return None
        if self.allowed and any(pattern.search(value) for pattern in self.allowed):
            return None
        if self.json and depth < MAX_JSON_NESTING and _looks_json(value):
            document = _parse(value)
            if document is not _NOT_JSON:
                return self._json(document, hits, depth)
        return self.plain(value, hits, first)

    def first_candidate(self, value: str) -> int | None:
        """The pre-check: one RE2 search of every built-in candidate at once; where the first
        starts (no built-in detector can match before it), or None."""
        if self.any_built_in is None or self.any_built_in_bytes is None:
            return None
        found = self.any_built_in_bytes.search(value.encode()) if value.isascii() else self.any_built_in.search(value)
        return None if found is None else found.start()

    def plain(self, value: str, hits: Counter[str], first: int | None = 0) -> str | None:
        """`value` with every match replaced; the built-in detectors search from `first` on
        (None: none of them can match)."""
        found: list[tuple[int, int, int, Detector]] = []  # (start, order, end, detector)
        ascii_value = value.encode() if value.isascii() else None
        for order, detector in enumerate(self.detectors):
            if first is None and detector.candidate is not None:
                continue
            for match in detector.matches(value, ascii_value, first or 0):
                start, end = match.span(detector.group)
                if detector.check is not None:
                    accepted = detector.check(value[start:end])
                    if not accepted:
                        continue
                    end = start + accepted
                found.append((start, order, end, detector))
        if not found:
            return None
        found.sort(key=lambda item: (item[0], item[1]))
        parts, position = [], 0
        for start, _, end, detector in found:
            if start < position:  # overlaps an earlier (or higher-priority) match
                continue
            parts += [value[position:start], detector.replace(value[start:end])]
            hits[detector.name] += 1
            position = end
        parts.append(value[position:])
        return "".join(parts)

    def _json(self, document: Any, hits: Counter[str], depth: int) -> str | None:
        """Redact every string of a parsed document in place (no recursion: documents may nest
        as deep as the parser allows); the re-encoded text, or None when nothing changed."""
        changed = False
        stack = [document]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                for key in list(node):
                    item = node[key]
                    new_key = self.text(key, hits, depth + 1) if isinstance(key, str) else None
                    if isinstance(item, (str, int)):
                        new_item = self._scalar(item, hits, depth)
                        if new_item is not None:
                            item, changed = new_item, True
                    elif isinstance(item, (dict, list)):
                        stack.append(item)
                    if new_key is not None:
                        del node[key]
                        key, changed = new_key, True
                    node[key] = item
            elif isinstance(node, list):
                for index, item in enumerate(node):
                    if isinstance(item, (str, int)):
                        new_item = self._scalar(item, hits, depth)
                        if new_item is not None:
                            node[index], changed = new_item, True
                    elif isinstance(item, (dict, list)):
                        stack.append(item)
        return orjson.dumps(document).decode() if changed else None


    def _scalar(self, item: str | int, hits: Counter[str], depth: int) -> str | None:
        """A string of the document, or an integer (a card number sent as a JSON number) as text."""
        if isinstance(item, str):
            return self.text(item, hits, depth + 1)
        if isinstance(item, bool) or item < 10**11:  # too short for any detector's digits
            return None
        text = str(item)
        return self.plain(text, hits, self.first_candidate(text))


class WireCheck:
    """Where in a batch's wire bytes any detector's candidate occurs, in one pass of RE2 (a DFA: linear time,
    whatever the number of expressions; Python's backtracking engine tries every alternative at
    every byte and costs about thirty times more here)."""

    def __init__(self, rules: list[Rule]) -> None:
        self.pattern = re2.compile("|".join(f"(?:{rule.candidate})" for rule in rules).encode())

    def ranges(self, wire: bytes) -> list[tuple[int, int]]:
        """Sorted, non-overlapping (start, end) byte ranges of the candidates found (empty: none)."""
        return [match.span() for match in self.pattern.finditer(wire)]


_NOT_JSON = object()


def _looks_json(value: str) -> bool:
    head = value.lstrip()[:1]
    return head in ("{", "[") and value.rstrip()[-1:] in ("}", "]")


def _parse(value: str) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return _NOT_JSON

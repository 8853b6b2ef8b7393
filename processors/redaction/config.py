"""The `redaction` processor's config, with otelcol contrib's redaction processor names.

Key rules (`allow_all_keys`, `allowed_keys`, `ignored_keys`, `blocked_key_patterns`) and
value rules (`blocked_values`, `allowed_values`, the built-in `detectors`) work as there;
`hash_function: hmac-sha256` with `hash_key` hashes instead of masking (keyed, so equal
values still match across spans, and a reader without the key cannot test guesses).

Cost: with the built-in detectors alone, a batch is searched once (RE2, over its bytes) and
only spans holding a candidate are walked. `allowed_keys` (allow_all_keys false),
`blocked_key_patterns`, `blocked_values` and `redact_all_types` need every attribute looked
at: the processor then walks every span (about 20 µs per span in Python).
"""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from pipeline.component import StrictConfig

Mode = Literal["mask", "hash"]
MIN_KEY_LENGTH = 16


class DetectorConfig(StrictConfig):
    """One built-in detector: `card: false` (off), `card: {mode: hash}`, `email: true` (on)."""

    enabled: bool = True
    mode: Mode | None = None  # None: the processor's (`hash_function`)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value


class OffDetectorConfig(DetectorConfig):
    """A detector that is off unless named: `email: true`, `email: {}` or `email: {mode: hash}`
    switch it on (`enabled` defaults to false only when the detector is not named at all)."""

    enabled: bool = False

    @model_validator(mode="before")
    @classmethod
    def _named_is_on(cls, value: Any) -> Any:
        return {"enabled": True, **value} if isinstance(value, dict) else value


class DetectorsConfig(StrictConfig):
    """Secrets and checksummed numbers are on unless switched off; email and phone (personal
    data a debugging session may need, and phone the most prone to false positives) are off
    unless switched on."""

    jwt: DetectorConfig = DetectorConfig()
    bearer: DetectorConfig = DetectorConfig()
    sk_api_key: DetectorConfig = DetectorConfig()
    aws_access_key: DetectorConfig = DetectorConfig()
    github_token: DetectorConfig = DetectorConfig()
    slack_token: DetectorConfig = DetectorConfig()
    card: DetectorConfig = DetectorConfig()
    iban: DetectorConfig = DetectorConfig()
    email: OffDetectorConfig = OffDetectorConfig(enabled=False)
    phone: OffDetectorConfig = OffDetectorConfig(enabled=False)

    def enabled(self) -> dict[str, DetectorConfig]:
        return {name: rule for name, rule in self if rule.enabled}


class RedactionConfig(StrictConfig):
    # As in otelcol: with allow_all_keys false, attributes not in allowed_keys are removed
    # (an empty list removes them all: it fails closed).
    allow_all_keys: bool = False
    allowed_keys: tuple[str, ...] = ()
    ignored_keys: tuple[str, ...] = ()
    blocked_key_patterns: tuple[str, ...] = ()  # regexes on keys: the whole value is masked
    blocked_values: tuple[str, ...] = ()        # regexes: each match in a string value is masked
    allowed_values: tuple[str, ...] = ()        # regexes: a matching value is left whole
    redact_all_types: bool = False              # also check integers (as their decimal text)
    detectors: DetectorsConfig = DetectorsConfig()
    hash_function: Literal["none", "hmac-sha256"] = "none"
    hash_key: SecretStr | None = None
    hash_prefix_length: int = Field(16, ge=8, le=64)  # hex characters of the HMAC kept
    summary: Literal["debug", "info", "silent"] = "silent"
    redact_json: bool = True  # redact inside JSON-looking strings, keeping them valid JSON

    @field_validator("blocked_key_patterns", "blocked_values", "allowed_values")
    @classmethod
    def _regexes(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        return patterns

    @model_validator(mode="after")
    def _key_when_hashing(self) -> "RedactionConfig":
        hashing = self.hash_function != "none" or any(
            rule.mode == "hash" for rule in self.detectors.enabled().values())
        if hashing:
            key = self.hash_key.get_secret_value() if self.hash_key else ""
            if len(key) < MIN_KEY_LENGTH:
                raise ValueError(f"hashing needs hash_key of at least {MIN_KEY_LENGTH} characters "
                                 "(e.g. ${env:AGENTDBG_REDACTION_KEY})")
        return self

    def mode_of(self, rule: str | None) -> Mode:
        """The mode of a detector (None: blocked_values and blocked keys)."""
        detector = getattr(self.detectors, rule, None) if rule else None
        if detector is not None and detector.mode is not None:
            return detector.mode
        return "hash" if self.hash_function != "none" else "mask"

"""`bearertokenauth`: the server side of otelcol's bearer-token authenticator.

Receivers that name it (`protocols.grpc.auth.authenticator: bearertokenauth`) accept a
request only when it carries `Authorization: Bearer <token>` (header name and scheme
configurable) with one of the configured tokens; otherwise HTTP 401 / gRPC
UNAUTHENTICATED. Tokens come from `token`, `tokens` or `filename` (one per line, read
again when the file changes, so tokens rotate without a restart).
"""
from __future__ import annotations

import hmac
from pathlib import Path

from pydantic import Field, model_validator

from pipeline.component import Component, Factory, Kind, Settings, StrictConfig


class BearerTokenAuthConfig(StrictConfig):
    header: str = "Authorization"
    scheme: str = "Bearer"
    token: str = ""
    tokens: list[str] = Field(default_factory=list)
    filename: str = ""

    @model_validator(mode="after")
    def _one_source(self) -> "BearerTokenAuthConfig":
        if not (self.token or self.tokens or self.filename):
            raise ValueError("set token, tokens or filename")
        if self.filename and not Path(self.filename).is_file():
            raise ValueError(f"filename {self.filename!r} does not exist")
        return self


class BearerTokenAuth(Component):
    def __init__(self, settings: Settings, config: BearerTokenAuthConfig) -> None:
        super().__init__(settings)
        self.config = config
        self._file_state: tuple[float, list[bytes]] = (-1.0, [])

    def _valid_tokens(self) -> list[bytes]:
        tokens = [t.encode() for t in (self.config.token, *self.config.tokens) if t]
        if self.config.filename:
            path = Path(self.config.filename)
            mtime = path.stat().st_mtime
            if mtime != self._file_state[0]:
                lines = [line.strip().encode() for line in path.read_text().splitlines() if line.strip()]
                self._file_state = (mtime, lines)
            tokens += self._file_state[1]
        return tokens

    def authenticate(self, headers: dict[str, str]) -> bool:
        """True when the header carries a configured token (compared in constant time)."""
        value = headers.get(self.config.header) or headers.get(self.config.header.lower()) or ""
        prefix = f"{self.config.scheme} "
        if not value.startswith(prefix):
            return False
        given = value[len(prefix):].strip().encode()
        return any(hmac.compare_digest(given, token) for token in self._valid_tokens())


factory = Factory("bearertokenauth", Kind.EXTENSION, BearerTokenAuthConfig, BearerTokenAuth,
                  description="bearer-token authentication for receivers")

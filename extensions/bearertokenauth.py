"""`bearertokenauth`: the server side of otelcol's bearer-token authenticator.

Receivers that name it (`protocols.grpc.auth.authenticator: bearertokenauth`) accept a
request only when it carries `Authorization: Bearer <token>` (header name and scheme
configurable) with one of the configured tokens; otherwise HTTP 401 / gRPC
UNAUTHENTICATED. Tokens come from `token`, `tokens` or `filename` (one per line, read
again when the file changes, so tokens rotate without a restart).

Each token may carry a role (`viewer`, `operator`, `admin`) and a subject, for the routes
that need one: `tokens: [{token: ..., role: operator, subject: oncall}]`. The simple forms
(`token:`, a string in `tokens:`, the lines of `filename`) take the top-level `role`. A
token with no subject is named by where it was configured (`bearertokenauth[tokens.1]`),
never by its value. Tokens are compared in constant time and never logged.

An empty token in `tokens` (`{token: "${env:AGENTDBG_DEBUG_TOKEN:-}"}` with the variable
unset) passes `validate`, so a config can be checked without its secrets, but the extension
refuses to start, naming the entry: nobody could present that token, and an operator who wrote
it expects it to work.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from pydantic import Field, model_validator

from pipeline.auth import Principal, Role, Unauthenticated, credentials
from pipeline.component import Component, Factory, Kind, Settings, StrictConfig


class TokenEntry(StrictConfig):
    token: str
    role: Role | None = None
    subject: str = ""


class BearerTokenAuthConfig(StrictConfig):
    header: str = "Authorization"
    scheme: str = "Bearer"
    token: str = ""
    tokens: list[str | TokenEntry] = Field(default_factory=list)
    filename: str = ""
    role: Role | None = None  # the role of `token`, of plain strings in `tokens` and of file tokens

    @model_validator(mode="after")
    def _one_source(self) -> "BearerTokenAuthConfig":
        if not (self.token or self.tokens or self.filename):
            raise ValueError("set token, tokens or filename")
        if self.filename and not Path(self.filename).is_file():
            raise ValueError(f"filename {self.filename!r} does not exist")
        return self

    def empty_entries(self) -> list[int]:
        """The positions in `tokens` whose token is empty (an unset environment variable)."""
        return [number for number, entry in enumerate(self.tokens)
                if not (entry.token if isinstance(entry, TokenEntry) else entry)]


@dataclass(frozen=True)
class _Known:
    secret: bytes
    principal: Principal


class BearerTokenAuth(Component):
    def __init__(self, settings: Settings, config: BearerTokenAuthConfig) -> None:
        super().__init__(settings)
        self.config = config
        self._configured = self._from_config()
        self._file_state: tuple[float, list[_Known]] = (-1.0, [])

    async def start(self, host: object = None) -> None:
        empty = self.config.empty_entries()
        if empty:
            where = ", ".join(f"extensions::{self.id}::tokens::{number}" for number in empty)
            raise ValueError(f"{where}: the token is empty (is the environment variable it reads unset?); "
                             "refusing to start with a token nobody can present")

    def _known(self, secret: str, where: str, role: Role | None, subject: str = "") -> _Known:
        name = subject or f"{self.id}[{where}]"
        return _Known(secret.encode(), Principal(name, role, method=str(self.id)))

    def _from_config(self) -> list[_Known]:
        config = self.config
        known = [self._known(config.token, "token", config.role)] if config.token else []
        for number, entry in enumerate(config.tokens):
            if isinstance(entry, TokenEntry):
                known.append(self._known(entry.token, f"tokens.{number}", entry.role, entry.subject))
            else:
                known.append(self._known(entry, f"tokens.{number}", config.role))
        return [entry for entry in known if entry.secret]  # empty ones: start() refuses them

    def _file_tokens(self) -> list[_Known]:
        if not self.config.filename:
            return []
        path = Path(self.config.filename)
        mtime = path.stat().st_mtime
        if mtime != self._file_state[0]:
            lines = [line.strip() for line in path.read_text().splitlines()]
            known = [self._known(line, f"file:{number}", self.config.role)
                     for number, line in enumerate(lines, 1) if line]
            self._file_state = (mtime, known)
        return self._file_state[1]

    def principal_of(self, headers: Mapping[str, str]) -> Principal:
        """Who the token in `headers` belongs to; raises `Unauthenticated` for none or an unknown one."""
        given = credentials(headers, self.config.header, self.config.scheme).encode()
        found = None
        # Compare with every token (no early exit), so the time taken says nothing of which matched.
        for known in (*self._configured, *self._file_tokens()):
            if hmac.compare_digest(given, known.secret) and found is None:
                found = known.principal
        if found is None:
            raise Unauthenticated("the token is not one of the configured tokens", self.config.scheme)
        return found

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        return self.principal_of(headers)


factory = Factory("bearertokenauth", Kind.EXTENSION, BearerTokenAuthConfig, BearerTokenAuth,
                  description="bearer-token authentication for receivers, with an optional role per token")

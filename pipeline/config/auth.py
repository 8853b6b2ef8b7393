"""`auth:` of an HTTP API the daemon serves to people (the debug API, the explorer): who may call it."""
from __future__ import annotations

from pydantic import model_validator

from pipeline.component import StrictConfig


class AuthConfig(StrictConfig):
    # One shared token: every API request then needs `Authorization: Bearer <token>`, and its
    # holder is admin (it proves the role, not the person).
    token: str = ""
    # Or the id of an authenticator extension (oidc, bearertokenauth): the role comes from the
    # principal, and each route needs the role its API's route table gives it.
    authenticator: str = ""
    # Refuse to start when neither is set (an empty ${env:...} token must not leave the API open).
    required: bool = False

    @model_validator(mode="after")
    def _one(self) -> "AuthConfig":
        if self.token and self.authenticator:
            raise ValueError("set token or authenticator, not both")
        return self

"""`webhook`: POST each safety decision as JSON to a URL (canary rollback hooks, agents' clients).

One request per decision, with `Idempotency-Key: <decision id>` (the same decision always
carries the same key, so a receiver can count a redelivery once) and, when `secret` is set,
`X-Agentdbg-Signature: sha256=<HMAC-SHA256 of the body>`. `actions` filters which decisions
go (empty: all). What it promises: 429 and 5xx are retried (honouring Retry-After) by the
exporter helper; any other non-2xx is permanent, counted and logged. Flagger and Argo
Rollouts treat a non-2xx answer as a failed check, which is what a refusing hook means.
With `sending_queue.enabled: false` (config/safety.yaml) a decision counts as delivered
only once the hook answered 2xx, so the Kafka receiver commits only after that.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Any

import aiohttp
from pydantic import Field

from exporters.helper import ExporterHelperConfig, QueuedExporter
from exporters.helper.http import raise_for_status
from pipeline.component import Factory, Kind, Settings, Signal
from pipeline.errors import RetryableError
from pipeline.netaddr import HttpUrl
from pipeline.pdata.events import Events

RETRYABLE = frozenset({429, 500, 502, 503, 504})


class WebhookConfig(ExporterHelperConfig):
    endpoint: HttpUrl
    actions: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    secret: str = ""



class WebhookExporter(QueuedExporter[Events]):
    def __init__(self, settings: Settings, config: WebhookConfig) -> None:
        super().__init__(settings, config)
        self.hook = config
        self.actions = set(config.actions)
        self._session: aiohttp.ClientSession | None = None

    async def start_client(self) -> None:
        self._session = aiohttp.ClientSession()

    async def stop_client(self) -> None:
        if self._session:
            await self._session.close()

    def item_count(self, batch: Events) -> int:
        return len(self._selected(batch))

    def _selected(self, batch: Events) -> list[tuple[dict[str, Any], bytes]]:
        return [(doc, body) for doc, body in zip(batch.documents, batch.encoded())
                if not self.actions or doc.get("action") in self.actions]

    async def send(self, batch: Events) -> None:
        for doc, body in self._selected(batch):
            await self._post(doc, body)

    async def _post(self, doc: dict[str, Any], body: bytes) -> None:
        assert self._session is not None
        headers = {**self.hook.headers, "Content-Type": "application/json", "Idempotency-Key": str(doc.get("id", ""))}
        if self.hook.secret:
            digest = hmac.new(self.hook.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Agentdbg-Signature"] = f"sha256={digest}"
        try:
            async with self._session.post(self.hook.endpoint, data=body, headers=headers) as response:
                text = (await response.read())[:300].decode("utf-8", "replace")
                raise_for_status(response.status, text or (response.reason or ""),
                                 response.headers.get("Retry-After"), RETRYABLE)
        except aiohttp.ClientError as exc:
            raise RetryableError(f"cannot reach {self.hook.endpoint}: {exc}", error_type="connection") from exc


factory = Factory("webhook", Kind.EXPORTER, WebhookConfig, WebhookExporter, signals=frozenset({Signal.EVENTS}),
                  description="POST safety decisions to a URL (idempotency key, optional HMAC signature)")

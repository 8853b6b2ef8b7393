"""Config of the `genai` processor: which instrumentation families to read, prices, cost, sessions."""
from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from pipeline.catalogue import load_overrides
from pipeline.component import StrictConfig
from processors.genai import aliases as A

Source = Literal["otel_legacy", "openinference", "openllmetry", "langfuse", "agentops", "openai_agents",
                 "google_adk"]


class GenAIConfig(StrictConfig):
    enabled_sources: tuple[Source, ...] = A.SOURCES  # type: ignore[assignment]
    prices_file: str | None = None
    write_cost: bool = True
    session_from_trace: bool = True

    @field_validator("prices_file")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None:
            load_overrides(value)  # raises ValueError with the reason: reported at config time
        return value

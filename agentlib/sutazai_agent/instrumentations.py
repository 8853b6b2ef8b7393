"""The LLM and framework instrumentations `configure` turns on when their package is installed.

Each entry is (module, Instrumentor class); one whose module does not import is skipped
quietly (not installed), one that fails to instrument is logged and skipped: a missing or
broken instrumentation never stops the agent from starting.
"""
from __future__ import annotations

import importlib
import logging
from typing import Any, Iterable

LOG = logging.getLogger("sutazai_agent.instrumentations")

KNOWN: tuple[tuple[str, str], ...] = (
    ("opentelemetry.instrumentation.openai_v2", "OpenAIInstrumentor"),         # opentelemetry-instrumentation-openai-v2
    ("opentelemetry.instrumentation.anthropic", "AnthropicInstrumentor"),      # opentelemetry-instrumentation-anthropic
    ("opentelemetry.instrumentation.google_genai", "GoogleGenAiSdkInstrumentor"),
    ("opentelemetry.instrumentation.vertexai", "VertexAIInstrumentor"),
    ("opentelemetry.instrumentation.langchain", "LangchainInstrumentor"),
    ("opentelemetry.instrumentation.ollama", "OllamaInstrumentor"),
)


def enable(tracer_provider: Any, only: Iterable[str] | None = None) -> list[str]:
    """Instrument every installed entry of `KNOWN` (or only the modules named in `only`); the
    modules turned on."""
    wanted = set(only) if only is not None else None
    enabled = []
    for module_name, class_name in KNOWN:
        if wanted is not None and module_name not in wanted:
            continue
        try:
            instrumentor = getattr(importlib.import_module(module_name), class_name)()
        except (ImportError, AttributeError):
            continue  # not installed (or another version without that class)
        try:
            if not instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.instrument(tracer_provider=tracer_provider)
            enabled.append(module_name)
        except Exception:  # noqa: BLE001 - a broken instrumentation must not stop the agent
            LOG.warning("could not enable %s; going on without it", module_name, exc_info=True)
    return enabled

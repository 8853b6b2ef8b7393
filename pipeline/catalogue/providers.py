"""Provider names: the values agents send → the well-known `gen_ai.provider.name` values.

One table for everyone who keys anything by provider: the `genai` processor writes the
normalised name on spans, and the price catalogue (prices.py) keys its override file by it, so
`provider: bedrock` in a prices file matches spans that said `aws`, `bedrock` or `aws.bedrock`.
"""
from __future__ import annotations

# Values seen in the wild → the well-known gen_ai.provider.name values. Others pass lowercased.
PROVIDER_VALUES: dict[str, str] = {
    "az.ai.openai": "azure.ai.openai", "azure_openai": "azure.ai.openai", "azure-openai": "azure.ai.openai",
    "az.ai.inference": "azure.ai.inference", "azure": "azure.ai.inference",
    "bedrock": "aws.bedrock", "aws": "aws.bedrock", "amazon": "aws.bedrock", "aws_bedrock": "aws.bedrock",
    "gemini": "gcp.gemini", "vertex_ai": "gcp.vertex_ai", "vertexai": "gcp.vertex_ai", "vertex": "gcp.vertex_ai",
    "google": "gcp.gen_ai", "google_genai": "gcp.gen_ai", "google-genai": "gcp.gen_ai",
    "mistralai": "mistral_ai", "mistral": "mistral_ai", "xai": "x_ai", "x-ai": "x_ai", "grok": "x_ai",
    "watsonx": "ibm.watsonx.ai", "ibm": "ibm.watsonx.ai",
}


def normalise_provider(value: str) -> str:
    """The well-known name for a provider value (lowercased; unknown values pass as they are)."""
    lowered = value.strip().lower()
    return PROVIDER_VALUES.get(lowered, lowered)

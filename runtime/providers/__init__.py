"""Provider adapters, looked up by `kind` from the registry table."""

from __future__ import annotations

from runtime.providers.anthropic import AnthropicAdapter
from runtime.providers.azure import AzureAdapter
from runtime.providers.base import Adapter
from runtime.providers.bedrock import BedrockAdapter
from runtime.providers.cohere import CohereAdapter
from runtime.providers.gemini import GeminiAdapter
from runtime.providers.mock import MockAdapter
from runtime.providers.openai import OpenAIAdapter
from runtime.providers.vertex import VertexAdapter

ADAPTERS: dict[str, Adapter] = {
    "openai": OpenAIAdapter(),
    "azure": AzureAdapter(),
    "mock": MockAdapter(),
    "anthropic": AnthropicAdapter(),
    "gemini": GeminiAdapter(),
    "bedrock": BedrockAdapter(),
    "vertex": VertexAdapter(),
    "cohere": CohereAdapter(),
}


def register_adapter(adapter: Adapter) -> None:
    ADAPTERS[adapter.kind] = adapter


def get_adapter(kind: str) -> Adapter:
    return ADAPTERS[kind]


__all__ = ["ADAPTERS", "get_adapter", "register_adapter"]

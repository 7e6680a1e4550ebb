"""The adapter contract: every registered adapter has every member the `Adapter` protocol declares (the
protocol lists everything the engine, router and HTTP layer call), and `list_models` is one shared rule
(configured models, then each key's allow-list and deployments) with only real differences per adapter."""

from __future__ import annotations

import pytest

from runtime.config.model import AzureKeyConfig, KeyConfig, ProviderConfig
from runtime.providers import ADAPTERS
from runtime.providers.base import Adapter
from runtime.providers.mock import MOCK_MODELS


def protocol_members() -> set[str]:
    names = set(Adapter.__annotations__)
    names.update(n for n, v in vars(Adapter).items() if callable(v) or isinstance(v, property))
    return {n for n in names if not n.startswith("_")}


def test_the_protocol_declares_what_the_engine_calls() -> None:
    assert {"kind", "operations", "local", "sign", "build_request", "parse_response", "parse_error",
            "stream_translator", "list_models", "respond", "respond_stream"} <= protocol_members()  # fmt: skip


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_every_adapter_has_every_protocol_member(kind: str) -> None:
    adapter = ADAPTERS[kind]
    missing = sorted(name for name in protocol_members() if not hasattr(adapter, name))
    assert not missing, f"adapter {kind!r} lacks {missing}"
    assert adapter.sign is None or callable(adapter.sign)


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini", "vertex", "cohere"])
def test_configured_models_then_each_keys_models(kind: str) -> None:
    keys = (KeyConfig("a", "v", models=("m2", "m1")), KeyConfig("b", "v", models=("m3", "m2")))
    provider = ProviderConfig("p", kind, keys=keys, models=("m1",))
    assert ADAPTERS[kind].list_models(provider) == ["m1", "m2", "m3"]
    assert ADAPTERS[kind].list_models(ProviderConfig("p", kind, keys=(KeyConfig("a", "v"),))) == []


def test_azure_adds_each_keys_deployments() -> None:
    key = KeyConfig("a", "v", models=("gpt-4o",), azure=AzureKeyConfig("https://x", {"gpt-4o": "d1", "o3": "d2"}))
    provider = ProviderConfig("az", "azure", keys=(key,))
    assert ADAPTERS["azure"].list_models(provider) == ["gpt-4o", "o3"]


def test_bedrock_adds_each_keys_deployments() -> None:
    key = KeyConfig("a", "v", models=("claude",), extra={"bedrock_key_config": {"deployments": {"nova": "id"}}})
    provider = ProviderConfig("br", "bedrock", keys=(key,))
    assert ADAPTERS["bedrock"].list_models(provider) == ["claude", "nova"]


def test_mock_lists_its_own_models() -> None:
    assert ADAPTERS["mock"].list_models(ProviderConfig("mock", "mock")) == list(MOCK_MODELS)

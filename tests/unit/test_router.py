"""Model strings -> provider and upstream model."""

from __future__ import annotations

import pytest

from runtime.config.model import ClientConfig, KeyConfig, NetworkConfig, ProviderConfig
from runtime.core.router import Router
from runtime.errors import UnknownModel, UnknownProvider


def router() -> Router:
    net = NetworkConfig(base_url="http://127.0.0.1:9")
    providers = {
        "openai": ProviderConfig("openai", "openai", keys=(KeyConfig("k", "v"),), network=net),
        "openrouter": ProviderConfig("openrouter", "openai", keys=(KeyConfig("k", "v"),), network=net),
        "groq": ProviderConfig(
            "groq", "openai", keys=(KeyConfig("only", "v", models=("llama-3.1-8b-instant",)),), network=net
        ),
        "mock": ProviderConfig("mock", "mock"),
    }
    return Router.build(providers, ClientConfig())


def test_split_on_first_slash_of_a_known_provider() -> None:
    handle, model = router().resolve("openrouter/meta-llama/llama-3-70b")
    assert (handle.name, model) == ("openrouter", "meta-llama/llama-3-70b")


def test_known_but_unconfigured_provider_says_how_to_configure_it() -> None:
    with pytest.raises(UnknownProvider, match=r"'mistral' is not configured.*MISTRAL_API_KEY"):
        router().resolve("mistral/mistral-small-latest")


def test_unknown_prefix_lists_configured_providers() -> None:
    with pytest.raises(UnknownProvider, match="Configured providers: groq, mock, openai, openrouter"):
        router().resolve("acme/some-model")


def test_bare_model_routes_to_the_provider_listing_it() -> None:
    handle, model = router().resolve("gpt-4o-mini")  # OpenAI's well-known models
    assert (handle.name, model) == ("openai", "gpt-4o-mini")
    handle, model = router().resolve("llama-3.1-8b-instant")  # a key's allow-list
    assert handle.name == "groq"
    with pytest.raises(UnknownModel, match="provider/model"):
        router().resolve("no-such-model")


def test_key_allow_list_rejects_other_models() -> None:
    with pytest.raises(UnknownModel, match="no key of provider 'groq' may serve model 'mixtral'"):
        router().resolve("groq/mixtral")


def test_rebuild_keeps_live_lanes() -> None:
    first = router()
    lane = first.handles["openai"].lane
    lane.try_acquire()
    net = NetworkConfig(base_url="http://127.0.0.1:10")
    second = Router.build(
        {"openai": ProviderConfig("openai", "openai", keys=(KeyConfig("k", "v"),), network=net)},
        ClientConfig(),
        previous=first,
    )
    assert second.handles["openai"].lane is lane and lane.in_flight == 1

"""The governance plugin's pre-hook in-process: which header carries the key, Go's prefix rule, routing
of bare names and fallbacks, the Caller chain, expiry with an injected clock, reloads."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from runtime.config.load import check_governance, parse_document
from runtime.config.model import Tuning
from runtime.core.context import RequestContext
from runtime.errors import AuthenticationRequired, PermissionDenied
from runtime.governance.auth import presented_key
from runtime.governance.entities import GovernanceConfig
from runtime.governance.plugin import GovernancePlugin

KEY = "sk-bf-unit-0001"


def headers(**values: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in values.items()}))


@pytest.mark.parametrize(
    ("given", "found"),
    [
        ({"x_bf_vk": KEY}, KEY),
        ({"Authorization": f"Bearer {KEY}"}, KEY),
        ({"Authorization": f"bearer  {KEY} "}, KEY),
        ({"x_api_key": KEY}, KEY),
        ({"x_goog_api_key": KEY}, KEY),
        ({"x_api_key": "SK-BF-UNIT-0001"}, "SK-BF-UNIT-0001"),  # Go compares the prefix case-insensitively
        ({"Authorization": "Bearer sk-proj-client-own"}, None),  # a client's own key: keyless, not refused
        ({"x_api_key": "sk-ant-client-own", "x_goog_api_key": "AIza-own"}, None),
        ({"x_bf_vk": "anything"}, "anything"),  # x-bf-vk is read whatever it holds
        ({"x_bf_vk": KEY, "Authorization": "Bearer sk-bf-other"}, KEY),  # x-bf-vk first
        ({}, None),
    ],
)
def test_presented_key(given: dict[str, str], found: str | None) -> None:
    assert presented_key(headers(**given)) == found


def governance(*keys: dict[str, Any], **extra: Any) -> tuple[GovernanceConfig, dict[str, Any]]:
    raw: dict[str, Any] = {
        "providers": {
            "openai": {"keys": [{"name": "o1", "value": "sk-1"}]},
            "anthropic": {"keys": [{"name": "a1", "value": "sk-a"}]},
        },
        "governance": {
            "budgets": [
                {"id": "b-pc", "max_limit": 1, "reset_duration": "1h"},
                {"id": "b-vk", "max_limit": 2, "reset_duration": "1d"},
                {"id": "b-team", "max_limit": 3, "reset_duration": "1w"},
                {"id": "b-cust", "max_limit": 4, "reset_duration": "1M"},
            ],
            "rate_limits": [{"id": "rl", "request_max_limit": 5, "request_reset_duration": "1m"}],
            "customers": [{"id": "c", "name": "C", "budget_id": "b-cust"}],
            "teams": [{"id": "t", "name": "T", "customer_id": "c", "budget_id": "b-team"}],
            "virtual_keys": list(keys),
            **extra,
        },
    }
    providers, client, _ = parse_document(raw, {}, Tuning())
    gov = check_governance(raw, {}, providers, client, [])
    assert gov is not None
    return gov, providers


def run(plugin: GovernancePlugin, body: dict[str, Any], **hdrs: str) -> RequestContext:
    ctx = RequestContext("r", "chat")
    ctx.headers = headers(**hdrs)
    ctx.body = body
    asyncio.run(plugin.pre_hook(ctx))
    return ctx


def test_caller_chain_most_specific_first() -> None:
    gov, providers = governance(
        {
            "id": "vk",
            "name": "k",
            "value": KEY,
            "team_id": "t",
            "budget_id": "b-vk",
            "rate_limit_id": "rl",
            "provider_configs": [{"provider": "openai", "budget_id": "b-pc"}],
        }
    )
    plugin = GovernancePlugin(gov, mandatory=True, providers=providers)
    ctx = run(plugin, {"model": "openai/gpt-4o"}, x_bf_vk=KEY)
    caller = ctx.caller
    assert (caller.virtual_key_id, caller.team_id, caller.customer_id) == ("vk", "t", "c")
    assert [b.id for b in caller.budgets] == ["b-pc", "b-vk", "b-team", "b-cust"]
    assert [r.id for r in caller.rate_limits] == ["rl"]


def test_bare_fallbacks_and_zero_weights() -> None:
    gov, providers = governance(
        {
            "id": "vk",
            "name": "k",
            "value": KEY,
            "provider_configs": [
                {"provider": "openai", "weight": 0, "allowed_models": ["m"]},
                {"provider": "anthropic", "weight": 0, "allowed_models": ["anthropic/m", "only-a"]},
            ],
        }
    )
    plugin = GovernancePlugin(gov, mandatory=True, providers=providers, rng=random.Random(7))
    chosen = {run(plugin, {"model": "m"}, x_bf_vk=KEY).body["model"] for _ in range(60)}
    assert chosen == {"openai/m", "anthropic/m"}  # all weights 0: shared equally, not all on one
    ctx = run(plugin, {"model": "openai/m", "fallbacks": ["only-a"]}, x_bf_vk=KEY)
    assert ctx.body["fallbacks"] == ["anthropic/only-a"]  # a bare fallback goes to a provider the key allows
    with pytest.raises(PermissionDenied) as err:
        run(plugin, {"model": "openai/m", "fallbacks": ["nowhere"]}, x_bf_vk=KEY)
    assert err.value.param == "fallbacks[0]" and err.value.type == "model_blocked"


def test_expiry_uses_the_clock_and_reload_swaps_keys() -> None:
    gov, providers = governance({"id": "vk", "name": "k", "value": KEY, "expires_at": "2030-01-01T00:00:00+00:00"})
    now = [1_800_000_000.0]  # 2027
    plugin = GovernancePlugin(gov, mandatory=False, providers=providers, clock=lambda: now[0])
    assert run(plugin, {"model": "openai/x"}, x_bf_vk=KEY).caller.virtual_key_id == "vk"
    now[0] = 1_893_456_000.0  # 2030-01-01T00:00:00Z exactly: expired (Go: now == expires_at is expired)
    with pytest.raises(PermissionDenied, match="expired"):
        run(plugin, {"model": "openai/x"}, x_bf_vk=KEY)
    plugin.reload(GovernanceConfig(), mandatory=True)
    with pytest.raises(AuthenticationRequired) as err:
        run(plugin, {"model": "openai/x"}, x_bf_vk=KEY)
    assert err.value.type == "virtual_key_not_found"
    with pytest.raises(AuthenticationRequired) as err:
        run(plugin, {"model": "openai/x"})
    assert err.value.type == "virtual_key_required"


def test_a_provider_added_live_is_split_off_like_the_router_does() -> None:
    gov, providers = governance({"id": "vk", "name": "k", "value": KEY, "provider_configs": [{"provider": "openai"}]})
    plugin = GovernancePlugin(gov, mandatory=True, providers=providers)
    assert run(plugin, {"model": "acme/x"}, x_bf_vk=KEY).body["model"] == "openai/acme/x"  # a bare name here
    plugin.reload(gov, True, [*providers, "acme"])  # the admin API added provider "acme"
    with pytest.raises(PermissionDenied) as err:
        run(plugin, {"model": "acme/x"}, x_bf_vk=KEY)
    assert err.value.type == "provider_blocked"

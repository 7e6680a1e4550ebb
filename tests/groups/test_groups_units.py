"""Model groups in-process: the config block's errors (with their paths) and warnings, the weighted order,
the router's resolution, and the governance plugin narrowing a group to what a virtual key allows."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from runtime.config.load import ConfigError, check_governance, parse_document
from runtime.config.model import GatewayConfig, Tuning
from runtime.core.context import RequestContext
from runtime.core.gateway import Gateway
from runtime.core.groups import GroupPlan
from runtime.core.hooks import Hooks
from runtime.errors import GatewayError, PermissionDenied, UnknownModel
from runtime.governance.plugin import GovernancePlugin

PROVIDERS: dict[str, Any] = {
    "openai": {"keys": [{"name": "o1", "value": "sk-1"}]},
    "groq": {"keys": [{"name": "g1", "value": "gsk-1"}]},
    "anthropic": {"keys": [{"name": "a1", "value": "sk-a", "models": ["claude-3-5-haiku-latest"]}]},
}
GROUPS: dict[str, Any] = {
    "fast-chat": {
        "targets": [{"model": "openai/gpt-4o-mini", "weight": 3}, {"model": "groq/llama-3.3-70b-versatile"}],
        "fallbacks": ["anthropic/claude-3-5-haiku-latest"],
        "strategy": "weighted",
    },
    "gpt-4o": {"targets": [{"model": "openai/gpt-4o"}, {"model": "groq/gpt-4o"}]},
}


def load(groups: Any, providers: dict[str, Any] | None = None, **extra: Any) -> tuple[GatewayConfig, tuple[str, ...]]:
    raw = {"providers": providers or PROVIDERS, "model_groups": groups, **extra}
    providers_, client, warnings = parse_document(raw, {}, Tuning())
    from runtime.config.groups import parse_model_groups

    config = GatewayConfig(
        providers=providers_,
        client=client,
        raw=raw,
        model_groups=parse_model_groups(groups, providers_),
        governance=check_governance(raw, {}, providers_, client, []),
    )
    return config, warnings


@pytest.mark.parametrize(
    ("groups", "path", "words"),
    [
        (
            {"g": {"targets": [{"model": "openai/a"}, {"model": "nope/b"}]}},
            "model_groups.g.targets[1].model",
            "not configured",
        ),
        ({"g": {"targets": [{"model": "gpt-4o"}]}}, "model_groups.g.targets[0].model", "provider/model"),
        (
            {"g": {"targets": [{"model": "openai/a", "weight": 0}]}},
            "model_groups.g.targets[0].weight",
            "greater than zero",
        ),
        (
            {"g": {"targets": [{"model": "openai/a", "weight": -1}]}},
            "model_groups.g.targets[0].weight",
            "greater than zero",
        ),
        ({"g": {"targets": [{"model": "openai/a", "weight": "3"}]}}, "model_groups.g.targets[0].weight", "number"),
        ({"g": {"targets": [{"model": "openai/a", "weight": True}]}}, "model_groups.g.targets[0].weight", "number"),
        ({"g": {"targets": []}}, "model_groups.g.targets", "non-empty"),
        ({"g": {"fallbacks": ["openai/a"]}}, "model_groups.g.targets", "required"),
        ({"g": {"targets": [{"model": "openai/a"}], "strategy": "random"}}, "model_groups.g.strategy", "weighted"),
        ({"g": {"targets": [{"model": "openai/a"}], "fallback": []}}, "model_groups.g.fallback", "fallbacks"),
        ({"g": {"targets": [{"model": "openai/a", "wieght": 2}]}}, "model_groups.g.targets[0].wieght", "weight"),
        (
            {"g": {"targets": [{"model": "openai/a"}, {"model": "openai/a"}]}},
            "model_groups.g.targets[1].model",
            "already",
        ),
        (
            {"g": {"targets": [{"model": "openai/a"}], "fallbacks": ["openai/a"]}},
            "model_groups.g.fallbacks[0]",
            "already",
        ),
        ({"g": {"targets": [{"model": "openai/a"}], "fallbacks": "openai/b"}}, "model_groups.g.fallbacks", "list"),
        # groups do not nest: a target or a fallback naming a group is an error, whatever the file order
        (
            {"g": {"targets": [{"model": "h"}]}, "h": {"targets": [{"model": "openai/a"}]}},
            "model_groups.g.targets[0].model",
            "groups do not nest",
        ),
        (
            {"g": {"targets": [{"model": "openai/a"}], "fallbacks": ["g"]}},
            "model_groups.g.fallbacks[0]",
            "groups do not nest",
        ),
        # a name that already means a provider's model (configured or known provider) would shadow silently
        ({"openai/fast": {"targets": [{"model": "openai/a"}]}}, "model_groups.openai/fast", "provider 'openai'"),
        ({"mistral/x": {"targets": [{"model": "openai/a"}]}}, "model_groups.mistral/x", "provider 'mistral'"),
        ({"has space": {"targets": [{"model": "openai/a"}]}}, "model_groups.has space", "without spaces"),
        # the router's own rules for a provider's models and its keys' allow-lists
        ({"g": {"targets": [{"model": "anthropic/claude-3-opus"}]}}, "model_groups.g.targets[0].model", "no key"),
        ({"g": []}, "model_groups.g", "object"),
    ],
)
def test_config_errors_name_their_path(groups: Any, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(groups)
    assert err.value.path == path
    assert words in err.value.message


def test_the_block_must_be_an_object() -> None:
    with pytest.raises(ConfigError) as err:
        load(["fast-chat"])
    assert err.value.path == "model_groups"


def test_a_group_named_like_a_bare_model_wins_and_says_so() -> None:
    config, warnings = load(GROUPS)
    assert set(config.model_groups) == {"fast-chat", "gpt-4o"}
    shadow = [w for w in warnings if w.startswith("model_groups.gpt-4o")]
    assert shadow and "openai/gpt-4o" in shadow[0], warnings
    assert not [w for w in warnings if w.startswith("model_groups.fast-chat")]


def test_weighted_order_is_exact_and_interleaved() -> None:
    plan = GroupPlan("g", ["a", "b", "c"], [3.0, 1.0, 2.0], ["fb"])
    orders = [plan.next_order() for _ in range(600)]
    assert Counter(o[0] for o in orders) == {"a": 300, "b": 100, "c": 200}
    # Smooth: never the heavy target for a whole weight's run in a row, and every window of 6 holds each share.
    for start in range(0, 600, 6):
        assert Counter(o[0] for o in orders[start : start + 6]) == {"a": 3, "b": 1, "c": 2}
    # The chosen one first, the others heaviest first, then the group's fallbacks.
    assert {tuple(o) for o in orders} == {("a", "c", "b", "fb"), ("b", "a", "c", "fb"), ("c", "a", "b", "fb")}
    assert plan.heaviest_order() == ("a", "c", "b", "fb")


def gateway_for(groups: Any, providers: dict[str, Any] | None = None) -> Gateway:
    config, _ = load(groups, providers)
    return Gateway(config, Hooks([]))


def route(gw: Gateway, model: str, fallbacks: list[str] | None = None) -> tuple[RequestContext, list[str]]:
    ctx = RequestContext("t", "chat")
    body: dict[str, Any] = {"model": model, "messages": []}
    if fallbacks is not None:
        body["fallbacks"] = fallbacks
    targets = gw.targets(ctx, body)
    return ctx, [f"{h.name}/{m}" for h, m in targets]


def test_router_resolves_a_group_into_weighted_targets_then_fallbacks_then_the_clients() -> None:
    gw = gateway_for(GROUPS)
    firsts: Counter[str] = Counter()
    for _ in range(40):
        ctx, targets = route(gw, "fast-chat", ["openai/gpt-4o"])
        assert ctx.model_requested == "fast-chat"
        assert sorted(targets[:2]) == ["groq/llama-3.3-70b-versatile", "openai/gpt-4o-mini"]
        assert targets[2:] == ["anthropic/claude-3-5-haiku-latest", "openai/gpt-4o"]
        assert ctx.provider + "/" + ctx.model == targets[0]
        firsts[targets[0]] += 1
    assert firsts == {"openai/gpt-4o-mini": 30, "groq/llama-3.3-70b-versatile": 10}
    # A group named like a bare model wins over bare-name routing; provider/model still goes direct.
    assert route(gw, "gpt-4o")[1][0] in ("openai/gpt-4o", "groq/gpt-4o")
    assert route(gw, "openai/gpt-4o")[1] == ["openai/gpt-4o"]
    # A group named as a client's fallback: its targets heaviest first, then its fallbacks.
    assert route(gw, "openai/gpt-4o", ["fast-chat"])[1] == [
        "openai/gpt-4o",
        "openai/gpt-4o-mini",
        "groq/llama-3.3-70b-versatile",
        "anthropic/claude-3-5-haiku-latest",
    ]


def test_a_group_whose_provider_has_no_usable_key_serves_from_the_others() -> None:
    providers = {**PROVIDERS, "groq": {"keys": [{"name": "g1", "value": "env.GROQ_KEY_UNSET_IN_TEST"}]}}
    gw = gateway_for(GROUPS, providers)
    for _ in range(4):
        assert route(gw, "fast-chat")[1] == ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"]
    only_groq = {"g": {"targets": [{"model": "groq/llama-3.3-70b-versatile"}]}}
    gw = gateway_for(only_groq, providers)
    with pytest.raises(GatewayError) as err:
        route(gw, "g")
    assert err.value.status == 503 and "GROQ_KEY_UNSET_IN_TEST" in err.value.message


def test_without_groups_a_bare_name_is_unchanged() -> None:
    gw = gateway_for(None)
    assert gw.router.groups == {}
    with pytest.raises(UnknownModel):
        route(gw, "fast-chat")


# -- governance: a virtual key's allow-lists apply to the group's resolved targets -----------------------------
VK_OPENAI = "sk-bf-groups-openai-0001"
VK_GROQ = "sk-bf-groups-groq-0002"
VK_ANTHROPIC = "sk-bf-groups-anthropic-0003"
VK_ANY = "sk-bf-groups-any-0004"
GOVERNANCE = {
    "virtual_keys": [
        {"id": "vk-o", "value": VK_OPENAI, "provider_configs": [{"provider": "openai"}]},
        {"id": "vk-g", "value": VK_GROQ, "provider_configs": [{"provider": "groq", "allowed_models": ["other"]}]},
        {"id": "vk-a", "value": VK_ANTHROPIC, "provider_configs": [{"provider": "anthropic"}]},
        {"id": "vk-any", "value": VK_ANY},
    ]
}


def governed(groups: Any = GROUPS) -> tuple[GovernancePlugin, GatewayConfig]:
    config, _ = load(groups, governance=GOVERNANCE)
    plugin = GovernancePlugin(config.governance, mandatory=True, providers=config.providers, groups=config.model_groups)
    return plugin, config


def pre(plugin: GovernancePlugin, key: str, body: dict[str, Any]) -> RequestContext:
    ctx = RequestContext("t", "chat")
    ctx.headers = CIMultiDictProxy(CIMultiDict({"x-bf-vk": key}))
    ctx.body = body
    ctx.model_requested = body["model"]
    asyncio.run(plugin.pre_hook(ctx))
    return ctx


def test_a_virtual_key_uses_only_the_group_targets_it_allows() -> None:
    plugin, config = governed()
    gw = Gateway(config, Hooks([]))
    for _ in range(8):
        body = {"model": "fast-chat", "messages": []}
        ctx = pre(plugin, VK_OPENAI, body)
        assert body["model"] == "openai/gpt-4o-mini" and "fallbacks" not in body
        assert [f"{h.name}/{m}" for h, m in gw.targets(ctx, body)] == ["openai/gpt-4o-mini"]
        assert ctx.model_requested == "fast-chat"  # the log row still says what the client asked for
    # Only the group's fallback is allowed: it serves alone.
    body = {"model": "fast-chat", "messages": [], "fallbacks": ["anthropic/claude-3-5-haiku-latest"]}
    pre(plugin, VK_ANTHROPIC, body)
    assert body["model"] == "anthropic/claude-3-5-haiku-latest"
    # Nothing of the group allowed: 403 model_blocked naming the group, as for any model.
    with pytest.raises(PermissionDenied) as err:
        pre(plugin, VK_GROQ, {"model": "fast-chat", "messages": []})
    assert err.value.type == "model_blocked" and "fast-chat" in err.value.message
    # A group as a fallback is narrowed the same way; a key without provider_configs leaves it to the router.
    body = {"model": "openai/gpt-4o", "messages": [], "fallbacks": ["fast-chat"]}
    pre(plugin, VK_OPENAI, body)
    assert body["fallbacks"] == ["openai/gpt-4o-mini"]
    body = {"model": "fast-chat", "messages": []}
    pre(plugin, VK_ANY, body)
    assert body == {"model": "fast-chat", "messages": []}


def test_a_virtual_key_spreads_by_the_weights_of_the_targets_it_allows() -> None:
    # A key allowing both providers of the group's targets gets the group's 3:1 order.
    firsts: Counter[str] = Counter()
    both = {**GOVERNANCE}
    both["virtual_keys"] = [
        {"id": "vk-b", "value": VK_OPENAI, "provider_configs": [{"provider": "openai"}, {"provider": "groq"}]}
    ]
    config, _ = load(GROUPS, governance=both)
    plugin = GovernancePlugin(config.governance, mandatory=True, providers=config.providers, groups=config.model_groups)
    for _ in range(40):
        body = {"model": "fast-chat", "messages": []}
        pre(plugin, VK_OPENAI, body)
        firsts[body["model"]] += 1
        assert len(body["fallbacks"]) == 1  # the other target; anthropic's fallback is not this key's
    assert firsts == {"openai/gpt-4o-mini": 30, "groq/llama-3.3-70b-versatile": 10}


def test_reload_brings_new_groups_to_governance() -> None:
    plugin, _ = governed({"g": {"targets": [{"model": "groq/x"}]}})
    with pytest.raises(PermissionDenied):
        pre(plugin, VK_OPENAI, {"model": "g", "messages": []})
    new, _ = load({"g": {"targets": [{"model": "openai/x"}]}}, governance=GOVERNANCE)
    plugin.reload(new.governance, True, new.providers, new.model_groups)
    body = {"model": "g", "messages": []}
    pre(plugin, VK_OPENAI, body)
    assert body["model"] == "openai/x"


def test_adaptive_is_accepted_and_without_statistics_spreads_over_every_target() -> None:
    config, warnings = load(
        {"g": {"targets": [{"model": "openai/a", "weight": 2}, {"model": "groq/b"}], "strategy": "adaptive"}}
    )
    assert config.model_groups["g"].strategy == "adaptive"
    assert not any(w.startswith("model_groups.g.strategy") for w in warnings)
    gw = Gateway(config, Hooks([]))
    shares = Counter(route(gw, "g")[1][0] for _ in range(300))
    assert set(shares) == {"openai/a", "groq/b"}, "no target is starved before statistics exist"
    assert shares["openai/a"] > shares["groq/b"], "the weights still lead while the statistics are equal"


def test_context_window_fallbacks_may_be_keyed_by_a_group_name() -> None:
    config, _ = load(GROUPS, client={"context_window_fallbacks": {"fast-chat": ["openai/gpt-4.1-mini"]}})
    gw = Gateway(config, Hooks([]))
    ctx, _targets = route(gw, "fast-chat")
    handle = gw.router.handles["openai"]
    larger = gw.rules().larger_context(ctx, handle, "gpt-4o-mini", [], [])
    assert [f"{h.name}/{m}" for h, m in larger] == ["openai/gpt-4.1-mini"]

"""The `governance` plugin: virtual-key auth, allow-lists and routing, then budgets and rate limits.

Its pre-hook, before routing (runtime/core/hooks.py):

1. the key the request presents (runtime/governance/auth.py). None: 401 when keys are mandatory
   (`client.enforce_auth_on_inference` or the plugin's `is_vk_mandatory`), else the request goes on
   ungoverned, as without this plugin. A presented key that is not configured: 401. Disabled or
   expired: 403. Statuses, `type`s and messages are Go Bifrost's (plugins/governance/main.go).
2. the key's `provider_configs`: `provider/model` must name a provider the key lists (403
   provider_blocked) and a model that config allows (403 model_blocked); a bare model name is routed
   by weighted choice among the key's providers that allow it (`ctx.body["model"]` becomes
   `provider/model`, the others, heaviest first, its `fallbacks` unless the client gave some), as Go's
   load balancer does. Client-given fallbacks must pass the same checks. A key without provider_configs
   may use every provider and model. A model group's name (config.json `model_groups`) is resolved
   here, before the allow-lists: the key may use the group's targets (and fallbacks) its provider_configs
   allow, the others are left out, and none allowed is 403 model_blocked (docs/model-groups.md).
3. `ctx.allowed_keys` (the provider keys each provider config allows) and `ctx.caller`, the Caller
   (runtime/governance/model.py) with the chain of budgets and rate limits, most specific first.
4. the limits (budgets and rate limits), when the plugin was given them: its pre-hook and
   on_finish delegate to that object.

Everything per key is precomputed here at start-up, so a governed request costs a SHA-256 of its key,
a dict look-up and a few attribute reads; an ungoverned gateway builds no plugin at all.
"""

from __future__ import annotations

import random
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from itertools import accumulate
from types import MappingProxyType
from typing import Any

from runtime.config.model import GroupTarget, ModelGroup
from runtime.core.context import RequestContext
from runtime.core.groups import GroupPlan
from runtime.errors import AuthenticationRequired, PermissionDenied
from runtime.governance.auth import presented_key
from runtime.governance.entities import GovernanceConfig, VirtualKey, VirtualKeyProvider, digest
from runtime.governance.model import Budget, Caller, RateLimit

MISSING_KEY = (
    "virtual key is required. Provide a virtual key via the x-bf-vk header "
    "(or as the API key: Authorization: Bearer, x-api-key or x-goog-api-key)."
)
UNKNOWN_KEY = "virtual key not found. The provided virtual key does not exist or has been revoked."


class _Entry:
    """One virtual key with what its requests need, computed once."""

    __slots__ = ("allowed_keys", "caller", "callers", "groups", "key", "routes")

    def __init__(self, key: VirtualKey, governance: GovernanceConfig) -> None:
        self.key = key
        team = governance.team(key.team_id)
        customer = governance.customer_of(key)
        owners = (key, team, customer)  # most specific first
        self.caller = _caller(key, team.id if team else None, customer.id if customer else None, owners)
        self.callers: dict[str, Caller] = {
            pc.provider: _caller(key, self.caller.team_id, self.caller.customer_id, (pc, *owners))
            for pc in key.provider_configs
        }
        restricted = {pc.provider: pc.allowed_keys for pc in key.provider_configs if pc.allowed_keys is not None}
        self.allowed_keys: Mapping[str, frozenset[str]] | None = MappingProxyType(restricted) if restricted else None
        self.routes: dict[str, _Route | None] = {}
        self.groups: dict[str, GroupPlan[str] | None] = {}  # group name -> its targets this key may use

    def group(self, group: ModelGroup) -> GroupPlan[str] | None:
        """Group `group` narrowed to the targets and fallbacks this key allows (None: none), computed once
        per key and config (a reload rebuilds every entry)."""
        try:
            return self.groups[group.name]
        except KeyError:
            pass
        targets = [t for t in group.targets if self._allows(t)]
        fallbacks = [t.name for t in group.fallbacks if self._allows(t)]
        plan = (
            GroupPlan(group.name, [t.name for t in targets], [t.weight for t in targets], fallbacks, group.strategy)
            if targets or fallbacks
            else None
        )
        self.groups[group.name] = plan
        return plan

    def _allows(self, target: GroupTarget) -> bool:
        pc = self.key.provider_config(target.provider)
        return pc is not None and pc.allows(target.model)

    def route(self, name: str) -> _Route | None:
        """The routing of bare model `name` (None: no provider config allows it), computed once."""
        try:
            return self.routes[name]
        except KeyError:
            pass
        eligible = [pc for pc in self.key.provider_configs if pc.allows(name)]
        route = _Route(eligible, name) if eligible else None
        if len(self.routes) < 1024:  # model names come from clients: bound the cache
            self.routes[name] = route
        return route


def _index(governance: GovernanceConfig | None) -> dict[bytes, _Entry]:
    gov = governance or GovernanceConfig()
    return {vk.value_digest: _Entry(vk, gov) for vk in gov.virtual_keys}


def _caller(key: VirtualKey, team_id: str | None, customer_id: str | None, owners: Iterable[Any]) -> Caller:
    budgets: list[Budget] = []
    limits: list[RateLimit] = []
    for owner in owners:
        if owner is None:
            continue
        if owner.budget is not None and owner.budget not in budgets:
            budgets.append(owner.budget)
        if owner.rate_limit is not None and owner.rate_limit not in limits:
            limits.append(owner.rate_limit)
    return Caller(
        virtual_key_id=key.id,
        virtual_key_name=key.name,
        team_id=team_id,
        customer_id=customer_id,
        budgets=tuple(budgets),
        rate_limits=tuple(limits),
    )


class GovernancePlugin:
    """Virtual-key governance on the hook contract. `limits` is the budgets-and-rate-limits object (with
    async pre_hook/post_hook and sync on_finish), or None to govern access only."""

    name = "governance"

    def __init__(
        self,
        governance: GovernanceConfig | None,
        *,
        mandatory: bool,
        providers: Iterable[str],
        limits: Any | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        groups: Mapping[str, ModelGroup] | None = None,
    ) -> None:
        self.mandatory = mandatory
        self.limits = limits
        self._keys = _index(governance)
        self._providers = provider_names(providers)
        self._groups: Mapping[str, ModelGroup] = groups or {}
        self._clock = clock
        self._random = (rng or random.Random()).random

    def reload(
        self,
        governance: GovernanceConfig | None,
        mandatory: bool,
        providers: Iterable[str] | None = None,
        groups: Mapping[str, ModelGroup] | None = None,
    ) -> None:
        """Adopt an edited config (config.json changed, by the admin API or by hand): its keys, switch,
        provider names (a provider added live must split off `provider/model` as the router does) and model
        groups. One assignment each: a request sees the old keys or the new ones, never a mix."""
        self._groups = groups or {}  # before the keys: new entries narrow the new groups
        self._keys = _index(governance)
        self.mandatory = mandatory
        if providers is not None:
            self._providers = provider_names(providers)

    async def pre_hook(self, ctx: RequestContext) -> Any:
        value = presented_key(ctx.headers)
        if value is None:
            if self.mandatory:
                raise AuthenticationRequired(MISSING_KEY)
            return None  # ungoverned, as without the plugin
        entry = self._keys.get(digest(value))
        if entry is None:
            raise AuthenticationRequired(UNKNOWN_KEY, type="virtual_key_not_found")
        key = entry.key
        if not key.is_active:
            raise PermissionDenied("Virtual key is inactive")
        if key.expires_at is not None and self._clock() >= key.expires_at:
            raise PermissionDenied("Virtual key has expired")
        provider = self._route(entry, ctx.body) if key.provider_configs else None
        ctx.caller = entry.callers.get(provider, entry.caller) if provider else entry.caller
        if entry.allowed_keys is not None:
            ctx.allowed_keys = entry.allowed_keys
        if self.limits is not None:
            return await self.limits.pre_hook(ctx)
        return None

    def on_finish(self, ctx: RequestContext) -> None:
        # The limits settle here (exactly once, whatever happened), not in a post-hook: post-hooks do not
        # run for a request the client left.
        if self.limits is not None and ctx.caller is not None:
            self.limits.on_finish(ctx)

    async def aclose(self) -> None:
        """At shutdown, before the shared-state store closes: hand back the unused leased slices."""
        if self.limits is not None:
            await self.limits.close()

    # -- allow-lists and routing -----------------------------------------------------------------------
    def _split(self, model: str) -> tuple[str | None, str]:
        """(provider, model) when the string starts with a provider's name, else (None, model): the
        router's rule, so `meta-llama/llama-3` stays a bare name."""
        prefix, slash, rest = model.partition("/")
        if slash and rest and prefix in self._providers:
            return prefix, rest
        return None, model

    def _check(self, key: VirtualKey, provider: str, model: str, param: str) -> VirtualKeyProvider:
        pc = key.provider_config(provider)
        if pc is None:
            raise PermissionDenied(
                f"Provider '{provider}' is not allowed for this virtual key", type="provider_blocked", param=param
            )
        if not pc.allows(model):
            raise _model_blocked(model, param)
        return pc

    def _route(self, entry: _Entry, body: dict[str, Any]) -> str | None:
        """Check (and for a bare name, choose) the request's provider; returns the provider chosen."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return None  # the router reports a missing or malformed model
        key = entry.key
        fallbacks = body.get("fallbacks")
        if fallbacks:
            self._check_fallbacks(entry, fallbacks)
        provider, name = self._split(model)
        if provider is not None:
            self._check(key, provider, name, "model")
            return provider
        group = self._groups.get(name) if self._groups else None
        if group is not None:
            plan = entry.group(group)
            if plan is None:
                raise _model_blocked(name, "model")
            order = plan.next_order()
            body["model"] = order[0]
            if len(order) > 1:
                body["fallbacks"] = order[1:] + (fallbacks if isinstance(fallbacks, list) else [])
            return self._split(order[0])[0]
        route = entry.route(name)
        if route is None:
            raise _model_blocked(name, "model")
        i = route.choose(self._random) if len(route.models) > 1 else 0
        body["model"] = route.models[i]
        if fallbacks is None and route.fallbacks[i]:
            body["fallbacks"] = list(route.fallbacks[i])
        return route.providers[i]

    def _check_fallbacks(self, entry: _Entry, fallbacks: Any) -> None:
        if not isinstance(fallbacks, list):
            return  # the router reports a malformed list
        checked: list[Any] = []
        for i, fallback in enumerate(fallbacks):
            checked.append(fallback)
            if not isinstance(fallback, str):
                continue
            fb_provider, fb_model = self._split(fallback)
            if fb_provider is not None:
                self._check(entry.key, fb_provider, fb_model, f"fallbacks[{i}]")
                continue
            group = self._groups.get(fb_model) if self._groups else None
            if group is not None:
                # A group as a fallback: the targets this key may use, heaviest first, in its place.
                plan = entry.group(group)
                if plan is None:
                    raise _model_blocked(fb_model, f"fallbacks[{i}]")
                checked[-1:] = plan.heaviest_order()
                continue
            # A bare fallback goes to the key's heaviest provider that allows it, never to whichever
            # provider the router would pick for the name.
            route = entry.route(fb_model)
            if route is None:
                raise _model_blocked(fb_model, f"fallbacks[{i}]")
            checked[-1] = route.models[route.heaviest]
        fallbacks[:] = checked


class _Route:
    """How one virtual key routes one bare model name: the providers that allow it, their weights, and
    for each choice the `provider/model` string and the fallbacks (the others, heaviest first)."""

    __slots__ = ("cumulative", "fallbacks", "heaviest", "models", "providers")

    def __init__(self, eligible: list[VirtualKeyProvider], name: str) -> None:
        weights = [pc.weight for pc in eligible]
        if sum(weights) <= 0:
            weights = [1.0] * len(eligible)  # every weight 0: they share equally
        self.cumulative = tuple(accumulate(weights))
        self.providers = tuple(pc.provider for pc in eligible)
        self.models = tuple(f"{pc.provider}/{name}" for pc in eligible)
        order = sorted(range(len(eligible)), key=lambda j: -weights[j])  # stable: file order breaks ties
        self.heaviest = order[0]
        self.fallbacks = tuple(tuple(self.models[j] for j in order if j != i) for i in range(len(eligible)))

    def choose(self, random: Callable[[], float]) -> int:
        """Weighted random choice (Go Bifrost's rule for provider_configs weights)."""
        i = bisect_right(self.cumulative, random() * self.cumulative[-1])
        return min(i, len(self.models) - 1)


def provider_names(configured: Iterable[str]) -> frozenset[str]:
    """Names a model string may start with: the configured providers and every known one (the router
    splits `provider/model` for both, and reports the unconfigured ones itself)."""
    from runtime.providers.registry import PROVIDER_SPECS

    return frozenset(configured) | frozenset(PROVIDER_SPECS)


def _model_blocked(model: str, param: str) -> PermissionDenied:
    return PermissionDenied(f"Model '{model}' is not allowed for this virtual key", type="model_blocked", param=param)


def is_mandatory(config: Any) -> bool:
    """Whether keyless requests get 401: `client.enforce_auth_on_inference`, or the governance plugin
    entry's `is_vk_mandatory` (Go Bifrost's two spellings of the same switch)."""
    if config.client.enforce_auth_on_inference:
        return True
    return any(p.name == "governance" and p.config.get("is_vk_mandatory") is True for p in config.plugins)


def build(config: Any, limits: Any | None = None) -> GovernancePlugin | None:
    """The plugin for a GatewayConfig, or None when nothing asks for governance (no plugin, no cost):
    no virtual key, no `governance` plugin entry, no `client.enforce_auth_on_inference`."""
    governance: GovernanceConfig | None = config.governance
    mandatory = is_mandatory(config)
    listed = any(p.name == "governance" and p.enabled for p in config.plugins)
    if not (mandatory or listed or (governance is not None and governance.virtual_keys)):
        return None
    return GovernancePlugin(
        governance, mandatory=mandatory, providers=config.providers, limits=limits, groups=config.model_groups
    )

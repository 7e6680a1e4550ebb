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
   may use every provider and model.
3. `ctx.allowed_keys` (the provider keys each provider config allows) and `ctx.caller`, the Caller
   (runtime/governance/model.py) with the chain of budgets and rate limits, most specific first.
4. the limits (budgets and rate limits), when the plugin was given them: its pre-hook, post-hook and
   on_finish delegate to that object.

Everything per key is precomputed here at start-up, so a governed request costs a SHA-256 of its key,
a dict look-up and a few attribute reads; an ungoverned gateway builds no plugin at all.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from runtime.core.context import RequestContext
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

    __slots__ = ("allowed_keys", "caller", "callers", "key")

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
    ) -> None:
        gov = governance or GovernanceConfig()
        self.mandatory = mandatory
        self.limits = limits
        self._keys: dict[bytes, _Entry] = {vk.value_digest: _Entry(vk, gov) for vk in gov.virtual_keys}
        self._providers = frozenset(providers)
        self._clock = clock
        self._random = (rng or random.Random()).random

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
        provider = self._route(key, ctx.body) if key.provider_configs else None
        ctx.caller = entry.callers.get(provider, entry.caller) if provider else entry.caller
        if entry.allowed_keys is not None:
            ctx.allowed_keys = entry.allowed_keys
        if self.limits is not None:
            return await self.limits.pre_hook(ctx)
        return None

    async def post_hook(self, ctx: RequestContext, response: Any) -> None:
        if self.limits is not None and ctx.caller is not None:
            await self.limits.post_hook(ctx, response)

    def on_finish(self, ctx: RequestContext) -> None:
        if self.limits is not None and ctx.caller is not None:
            self.limits.on_finish(ctx)

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

    def _route(self, key: VirtualKey, body: dict[str, Any]) -> str | None:
        """Check (and for a bare name, choose) the request's provider; returns the provider chosen."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return None  # the router reports a missing or malformed model
        fallbacks = body.get("fallbacks")
        if isinstance(fallbacks, list):
            for i, fallback in enumerate(fallbacks):
                if isinstance(fallback, str):
                    fb_provider, fb_model = self._split(fallback)
                    if fb_provider is not None:
                        self._check(key, fb_provider, fb_model, f"fallbacks[{i}]")
                        continue
                    # A bare fallback goes to the key's heaviest provider that allows it, never to
                    # whichever provider the router would pick for the name.
                    allowed = [pc for pc in key.provider_configs if pc.allows(fb_model)]
                    if not allowed:
                        raise _model_blocked(fb_model, f"fallbacks[{i}]")
                    fallbacks[i] = f"{max(allowed, key=lambda pc: pc.weight).provider}/{fb_model}"
        provider, name = self._split(model)
        if provider is not None:
            self._check(key, provider, name, "model")
            return provider
        eligible = [pc for pc in key.provider_configs if pc.allows(name)]
        if not eligible:
            raise _model_blocked(name, "model")
        chosen = self._choose(eligible)
        body["model"] = f"{chosen.provider}/{name}"
        if "fallbacks" not in body and len(eligible) > 1:
            others = sorted((pc for pc in eligible if pc is not chosen), key=lambda pc: -pc.weight)
            body["fallbacks"] = [f"{pc.provider}/{name}" for pc in others]
        return chosen.provider

    def _choose(self, eligible: list[VirtualKeyProvider]) -> VirtualKeyProvider:
        """Weighted random choice (Go's rule); when every weight is 0 they share equally."""
        if len(eligible) == 1:
            return eligible[0]
        weights = [pc.weight for pc in eligible]
        total = sum(weights)
        if total <= 0:
            weights = [1.0] * len(eligible)
            total = float(len(eligible))
        point = self._random() * total
        for pc, weight in zip(eligible, weights, strict=True):
            point -= weight
            if point < 0:
                return pc
        return eligible[-1]


def _model_blocked(model: str, param: str) -> PermissionDenied:
    return PermissionDenied(f"Model '{model}' is not allowed for this virtual key", type="model_blocked", param=param)


def build(config: Any, plugin_config: Mapping[str, Any], limits: Any | None = None) -> GovernancePlugin | None:
    """The plugin for a GatewayConfig, or None when nothing asks for governance (no plugin, no cost):
    no virtual key, no `governance` plugin entry, no `client.enforce_auth_on_inference`."""
    from runtime.providers.registry import PROVIDER_SPECS

    governance: GovernanceConfig | None = config.governance
    mandatory = bool(config.client.enforce_auth_on_inference or plugin_config.get("is_vk_mandatory") is True)
    listed = any(p.name == "governance" and p.enabled for p in config.plugins)
    if not (mandatory or listed or (governance is not None and governance.virtual_keys)):
        return None
    providers = set(config.providers) | set(PROVIDER_SPECS)
    return GovernancePlugin(governance, mandatory=mandatory, providers=providers, limits=limits)

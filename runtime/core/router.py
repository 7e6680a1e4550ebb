"""Routing: a model string -> (provider handle, upstream model name), and the per-provider handles.

A `ProviderHandle` is built once per provider at start-up (and again when the admin API changes a
provider): its config, registry row, adapter, lane, key selector and precomputed timeouts. Requests
only read it.

Model strings are `provider/model`, split on the first `/` only when the prefix names a configured or
known provider, so `openrouter/meta-llama/llama-3-70b` keeps its slashes. A bare model name is served
by the configured provider that lists it (in `models`, a key's allow-list or an Azure deployment map).

A model group (config.json `model_groups`, runtime/config/groups.py) is a name served by several
`provider/model` targets; `groups` maps it to its plan (runtime/core/groups.py), resolved here once
per build, and a group name wins over bare-name routing (docs/model-groups.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runtime.config.model import ClientConfig, ModelGroup, ProviderConfig
from runtime.core.groups import GroupPlan
from runtime.core.health import ProviderHealth, build_health
from runtime.core.keys import KeySelector
from runtime.core.lanes import Lane
from runtime.errors import GatewayError, UnknownModel, UnknownProvider
from runtime.providers import get_adapter
from runtime.providers.base import Adapter
from runtime.providers.registry import PROVIDER_SPECS, ProviderSpec, custom_spec


class ProviderHandle:
    __slots__ = ("adapter", "config", "health", "keys", "lane", "listed_models", "name", "spec", "unusable")

    def __init__(self, config: ProviderConfig, client: ClientConfig) -> None:
        self.name = config.name
        self.config = config
        spec = PROVIDER_SPECS.get(config.name)
        if spec is None or spec.kind != config.kind:  # a custom provider
            spec = custom_spec(config.name, config.kind, config.network.base_url)
        self.spec: ProviderSpec = spec
        self.adapter: Adapter = get_adapter(config.kind)
        self.lane = Lane(config.name, config.concurrency, config.buffer_size, client.drop_excess_requests)
        # Breakers and statistics (runtime/core/health.py); None: breakers off and weighted keys.
        self.health: ProviderHealth | None = build_health(config.name, config.circuit_breaker, config.load_balancing)
        self.keys = KeySelector(config.keys, health=self.health)
        # What /v1/models advertises: configured models, else the provider's well-known ones.
        self.listed_models = tuple(self.adapter.list_models(config)) or spec.default_models
        # Every key was skipped at load for an unset env.NAME: say so on each request, not "model unknown".
        self.unusable: str | None = None
        if config.missing_env:
            names = ", ".join(config.missing_env)
            self.unusable = (
                f"provider '{config.name}' has no usable key: environment variable {names} is not set "
                "(set it and restart, or edit the provider's keys)"
            )

    def serves_listed(self, model: str) -> bool:
        return model in self.listed_models


Target = tuple[ProviderHandle, str]


class Router:
    """Immutable routing table; the app swaps in a new one when providers or groups change."""

    __slots__ = ("_bare_cache", "groups", "handles")

    def __init__(self, handles: Mapping[str, ProviderHandle], groups: Mapping[str, ModelGroup] | None = None) -> None:
        self.handles = dict(handles)
        self._bare_cache: dict[str, ProviderHandle] = {}
        for handle in handles.values():
            for model in handle.listed_models:
                self._bare_cache.setdefault(model, handle)
        # Empty when no group is configured: the request path tests its truth once and goes on. A group
        # none of whose targets is usable now maps to the error its requests get.
        self.groups: dict[str, GroupPlan[Target] | GatewayError] = {}
        for name, group in (groups or {}).items():
            self.groups[name] = self._plan(group)

    def _plan(self, group: ModelGroup) -> GroupPlan[Target] | GatewayError:
        """Resolve a group's targets once. The config loader checked them; a target whose provider has no
        usable key (an unset env.NAME) is left out, so the group still serves from the others."""
        first_error: GatewayError | None = None
        targets: list[Target] = []
        weights: list[float] = []
        fallbacks: list[Target] = []
        for entry in (*group.targets, *group.fallbacks):
            try:
                target = self.resolve(entry.name)
            except GatewayError as err:
                first_error = first_error or err
                continue
            if entry in group.targets:
                targets.append(target)
                weights.append(entry.weight)
            else:
                fallbacks.append(target)
        if not targets and not fallbacks:
            assert first_error is not None
            return first_error
        return GroupPlan(group.name, targets, weights, fallbacks, group.strategy, _target_stats)

    @classmethod
    def build(
        cls,
        providers: Mapping[str, ProviderConfig],
        client: ClientConfig,
        previous: Router | None = None,
        groups: Mapping[str, ModelGroup] | None = None,
    ) -> Router:
        handles = {}
        for name, cfg in providers.items():
            old = previous.handles.get(name) if previous else None
            handle = ProviderHandle(cfg, client)
            if (
                old is not None
                and old.config.concurrency == cfg.concurrency
                and old.config.buffer_size == cfg.buffer_size
            ):
                # Keep the live lane so in-flight and queued requests stay counted.
                handle.lane = old.lane
                handle.lane.drop_excess = client.drop_excess_requests
            if old is not None and old.health is not None and handle.health is not None:
                # Keep what was learnt (open breakers stay open) across a config change.
                old.health.configure(cfg.circuit_breaker, cfg.load_balancing == "adaptive")
                handle.health = handle.keys.health = old.health
            handles[name] = handle
        return cls(handles, groups)

    @staticmethod
    def group_targets(plan: GroupPlan[Target] | GatewayError) -> list[Target]:
        """A group's targets for one request: the chosen one first, then the others heaviest first, then
        the group's fallbacks."""
        if isinstance(plan, GatewayError):
            raise _fresh(plan)
        return plan.next_order()

    def resolve_fallback(self, model_string: str) -> list[Target]:
        """A client's fallback: `provider/model` or a bare model (one target), or a group's name (its targets
        heaviest first, then its fallbacks: a fallback list has no weighted choice)."""
        plan = self.groups.get(model_string) if self.groups else None
        if plan is None:
            return [self.resolve(model_string)]
        if isinstance(plan, GatewayError):
            raise _fresh(plan)
        return list(plan.heaviest_order())

    def resolve(self, model_string: str) -> tuple[ProviderHandle, str]:
        """`provider/model` -> (handle, model). Raises UnknownProvider / UnknownModel (400)."""
        prefix, slash, rest = model_string.partition("/")
        if slash and rest:
            handle = self.handles.get(prefix)
            if handle is not None:
                if handle.unusable is not None:
                    raise GatewayError(handle.unusable, status=503, type="configuration_error", code="no_usable_key")
                self._check_model(handle, rest)
                return handle, rest
            if prefix in PROVIDER_SPECS:
                env_key = PROVIDER_SPECS[prefix].env_key
                raise UnknownProvider(
                    f"provider '{prefix}' is not configured. Configured providers: {self.configured()}. "
                    f"Add it to config.json under providers.{prefix} (or set its API key variable"
                    f"{' ' + env_key if env_key else ''}).",
                    param="model",
                )
        handle = self._bare_cache.get(model_string)
        if handle is not None:
            if handle.unusable is not None:
                raise GatewayError(handle.unusable, status=503, type="configuration_error", code="no_usable_key")
            return handle, model_string
        if slash:
            raise UnknownProvider(
                f"unknown provider '{prefix}' in model '{model_string}'. Configured providers: "
                f"{self.configured()}. Write models as provider/model, e.g. openai/gpt-4o-mini.",
                param="model",
            )
        raise UnknownModel(
            f"model '{model_string}' names no provider. Write it as provider/model (e.g. "
            f"openai/gpt-4o-mini); configured providers: {self.configured()}.",
            param="model",
        )

    def _check_model(self, handle: ProviderHandle, model: str) -> None:
        if not handle.keys.candidates(model):
            allowed = sorted({m for k in handle.config.keys for m in k.models})
            raise UnknownModel(
                f"no key of provider '{handle.name}' may serve model '{model}'. Models allowed by its keys: "
                f"{', '.join(allowed) or 'none'}.",
                param="model",
            )
        if handle.config.models and model not in handle.config.models:
            raise UnknownModel(
                f"model '{model}' is not among provider '{handle.name}' models: {', '.join(handle.config.models)}.",
                param="model",
            )

    def configured(self) -> str:
        return ", ".join(sorted(self.handles)) or "none"


def _fresh(err: GatewayError) -> GatewayError:
    """A new instance of a stored error (raising one instance per request would grow its traceback)."""
    return GatewayError(err.message, status=err.status, type=err.type, code=err.code, param="model")


def _target_stats(target: Target) -> Any:
    """A group target's breaker and statistics (runtime/core/health.py), for adaptive groups; None when its
    provider keeps none or the model has no outcome yet."""
    health = target[0].health
    return health.targets.get(target[1]) if health is not None else None

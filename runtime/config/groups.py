"""config.json `model_groups`: model names that clients ask for, served by weighted provider/model targets.

    "model_groups": {
      "fast-chat": {"targets": [{"model": "openai/gpt-4o-mini", "weight": 3},
                                {"model": "groq/llama-3.3-70b-versatile", "weight": 1}],
                    "fallbacks": ["anthropic/claude-3-5-haiku-latest"], "strategy": "weighted"}
    }

This block is ours (Go Bifrost has none), so every unknown field is an error with its path. What is
checked here, once, so a request never meets a broken group (docs/model-groups.md):
- every target and fallback is `provider/model` with a configured provider that may serve the model
  (the router's rules: the provider's `models`, its keys' allow-lists);
- weights are numbers > 0; no target twice, no fallback that is already a target;
- a target or fallback never names a group (groups do not nest: no recursion, no surprise order);
- a group is never named `<provider>/...` for a configured or known provider: that string already means
  "this provider, this model" and must keep meaning it. A group named like a bare model a provider
  lists (`gpt-4o`) is what an alias is for: it wins over bare-name routing, with a warning saying so,
  and `openai/gpt-4o` still reaches that provider directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from runtime.config import fields
from runtime.config.model import GroupTarget, ModelGroup, ProviderConfig
from runtime.providers.registry import PROVIDER_SPECS

GROUP_FIELDS = frozenset({"targets", "fallbacks", "strategy"})
TARGET_FIELDS = frozenset({"model", "weight"})
STRATEGIES = ("weighted", "adaptive")
MAX_NAME = 256


def parse_model_groups(
    value: Any, providers: Mapping[str, ProviderConfig], warnings: list[str] | None = None
) -> Mapping[str, ModelGroup]:
    """The `model_groups` block -> name -> ModelGroup (empty when absent). Raises ConfigError with the path."""
    from runtime.config.load import ConfigError  # load imports this module's callers

    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict):
        raise ConfigError("model_groups", f"expected an object, got {type(value).__name__}")
    out: dict[str, ModelGroup] = {}
    for name, data in value.items():
        path = f"model_groups.{name}"
        _check_name(name, path, providers)
        if not isinstance(data, dict):
            raise ConfigError(path, f"expected an object, got {type(data).__name__}")
        fields.check_fields(data, path, GROUP_FIELDS, (), warnings)
        raw_targets = data.get("targets")
        if not isinstance(raw_targets, list) or not raw_targets:
            raise ConfigError(f"{path}.targets", 'is required: a non-empty list of {"model": "provider/model"}')
        targets: list[GroupTarget] = []
        for i, item in enumerate(raw_targets):
            where = f"{path}.targets[{i}]"
            if not isinstance(item, dict):
                raise ConfigError(where, 'expected an object {"model": "provider/model", "weight": 1}')
            fields.check_fields(item, where, TARGET_FIELDS, (), warnings)
            target = _target(item.get("model"), f"{where}.model", value, providers)
            weight = item.get("weight", 1)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
                raise ConfigError(f"{where}.weight", f"must be a number greater than zero, got {weight!r}")
            if weight == float("inf"):
                raise ConfigError(f"{where}.weight", "must be a finite number")
            if any(t.name == target.name for t in targets):
                raise ConfigError(f"{where}.model", f"'{target.name}' is already a target of this group")
            targets.append(GroupTarget(target.provider, target.model, float(weight)))
        raw_fallbacks = data.get("fallbacks", [])
        if not isinstance(raw_fallbacks, list):
            raise ConfigError(f"{path}.fallbacks", "expected a list of provider/model strings")
        fallbacks: list[GroupTarget] = []
        for i, item in enumerate(raw_fallbacks):
            where = f"{path}.fallbacks[{i}]"
            target = _target(item, where, value, providers)
            if any(t.name == target.name for t in (*targets, *fallbacks)):
                raise ConfigError(where, f"'{target.name}' is already a target or fallback of this group")
            fallbacks.append(target)
        strategy = data.get("strategy", "weighted")
        if strategy not in STRATEGIES:
            raise ConfigError(f"{path}.strategy", f"expected one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if warnings is not None:
            shadowed = [p for p, cfg in providers.items() if name in _bare_models(p, cfg)]
            if shadowed:
                warnings.append(
                    f"{path}: '{name}' is also a model of provider(s) {', '.join(shadowed)}; requests for '{name}' "
                    f"go to this group (write {shadowed[0]}/{name} to reach that provider directly)"
                )
        out[name] = ModelGroup(name, tuple(targets), tuple(fallbacks), strategy)
    return MappingProxyType(out)


def _check_name(name: str, path: str, providers: Mapping[str, ProviderConfig]) -> None:
    from runtime.config.load import ConfigError

    if not name or len(name) > MAX_NAME or any(c.isspace() or not c.isprintable() for c in name):
        raise ConfigError(path, f"a group name is 1-{MAX_NAME} printable characters without spaces")
    prefix, slash, _rest = name.partition("/")
    if slash and (prefix in providers or prefix in PROVIDER_SPECS):
        raise ConfigError(
            path,
            f"a group must not be named '{prefix}/...': that already means provider '{prefix}', and the group "
            "would silently shadow it (or be shadowed); choose a name without a provider prefix",
        )


def _target(value: Any, path: str, groups: Mapping[str, Any], providers: Mapping[str, ProviderConfig]) -> GroupTarget:
    """One `provider/model` string of a group, checked as the router would resolve it."""
    from runtime.config.load import ConfigError

    if not isinstance(value, str) or not value:
        raise ConfigError(path, f"expected a provider/model string, got {value!r}")
    if value in groups:
        raise ConfigError(
            path, f"'{value}' is a model group: a group's targets and fallbacks are provider/model, groups do not nest"
        )
    prefix, slash, model = value.partition("/")
    if not slash or not model:
        raise ConfigError(path, f"'{value}' names no provider: write it as provider/model (e.g. openai/gpt-4o-mini)")
    provider = providers.get(prefix)
    if provider is None:
        configured = ", ".join(sorted(providers)) or "none"
        raise ConfigError(
            path, f"provider '{prefix}' is not configured{fields.suggest(prefix, providers)}; configured: {configured}"
        )
    if provider.models and model not in provider.models:
        raise ConfigError(
            path, f"model '{model}' is not among provider '{prefix}' models: {', '.join(provider.models)}"
        )
    if provider.keys and not any(k.allows(model) for k in provider.keys):
        raise ConfigError(path, f"no key of provider '{prefix}' may serve model '{model}'")
    return GroupTarget(prefix, model)


def _bare_models(name: str, provider: ProviderConfig) -> set[str]:
    """The bare model names the router would send to this provider (what a group of that name shadows)."""
    models = set(provider.models)
    for key in provider.keys:
        models.update(key.models)
        if key.azure is not None:
            models.update(key.azure.deployments)
    spec = PROVIDER_SPECS.get(name)
    if not models and spec is not None:
        models.update(spec.default_models)
    return models

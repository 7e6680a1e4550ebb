"""config.json `governance` -> GovernanceConfig (runtime/governance/entities.py), with field-path errors.

Follows Go Bifrost's schema: `budgets`, `rate_limits`, `customers`, `teams` and `virtual_keys` (with
`provider_configs`) are read; cross-references (a key naming a team, customer, budget or rate limit
that the block does not define) are errors with the path. Go's `routing_rules`, `model_configs`,
`providers` and `auth_config` are not implemented here: one warning each, their insides still checked
against Go's schema. Usage counters Go persists in the file (`current_usage`, `last_reset`, ...) are
warnings too: spend lives in the shared-state store, not in config.json.

A virtual key's `value` may be `env.NAME`; a key whose variable is unset is skipped with a warning (as
provider keys are). Values are hashed here and dropped: no message ever shows one, only its path or
its env reference.

Our extensions: `expires_at` on a virtual key (RFC 3339; Go Bifrost keeps the same field on its key
table, though its config schema does not list it), and `value_sha256` instead of `value` (the key's
digest, as the admin API stores the keys it creates: the value is shown once and kept nowhere).
`allowed_keys` (provider key names) is read as Go's own example configs write it; Go's schema
spelling, `keys: [{name, ...}]`, is read by name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from runtime.config import fields
from runtime.config.load import ConfigError, MissingEnv, _Reader, _type_name
from runtime.config.model import ProviderConfig
from runtime.governance.entities import (
    VK_PREFIX,
    Customer,
    GovernanceConfig,
    Team,
    VirtualKey,
    VirtualKeyProvider,
    digest,
)
from runtime.governance.model import Budget, RateLimit

_GOV = fields.properties(fields.SCHEMA).get("governance", {})


def _go_item(name: str) -> Any:
    """Go's schema node for one item of `governance.<name>` (a list)."""
    node = fields._resolve(fields.properties(_GOV).get(name, {}))
    return node.get("items") if isinstance(node, dict) else None


def _go_fields(node: Any) -> frozenset[str]:
    return frozenset(fields.properties(node))


GOV_FIELDS = frozenset({"budgets", "rate_limits", "customers", "teams", "virtual_keys"})
BUDGET_FIELDS = frozenset({"id", "max_limit", "reset_duration", "calendar_aligned"})
RATE_LIMIT_FIELDS = frozenset(
    {"id", "token_max_limit", "token_reset_duration", "request_max_limit", "request_reset_duration"}
)
CUSTOMER_FIELDS = frozenset({"id", "name", "budget_id", "rate_limit_id"})
TEAM_FIELDS = frozenset({"id", "name", "customer_id", "budget_id", "rate_limit_id"})
VK_FIELDS = frozenset(
    {
        "id",
        "name",
        "description",
        "value",
        "is_active",
        "team_id",
        "customer_id",
        "budget_id",
        "rate_limit_id",
        "provider_configs",
        "expires_at",
        "value_sha256",
    }
)
VK_PROVIDER_FIELDS = frozenset(
    {"provider", "weight", "allowed_models", "budget_id", "rate_limit_id", "allowed_keys", "keys"}
)

# Go's durations: a count and a unit (30s, 5m, 1h, 1d, 1w, 1M, 1Y).
_DURATION = re.compile(r"^[0-9]+(s|m|h|d|w|M|Y)$")


def _items(r: _Reader, key: str) -> list[tuple[str, Any]]:
    value = r.get(key, list, [])
    return [(f"{r.path}.{key}[{i}]", item) for i, item in enumerate(value)]


def _duration(r: _Reader, key: str, required: bool) -> str | None:
    value = r.get(key, str) if required else r.get(key, str, None)
    if value is not None and (not _DURATION.match(value) or int(value[:-1]) == 0):
        raise ConfigError(
            f"{r.path}.{key}", f"expected a duration such as 30s, 5m, 1h, 1d, 1w, 1M or 1Y, got {value!r}"
        )
    return value


def _id(r: _Reader, seen: set[str]) -> str:
    ident = r.get("id", str)
    if not ident:
        raise ConfigError(f"{r.path}.id", "must not be empty")
    if ident in seen:
        raise ConfigError(f"{r.path}.id", f"duplicate id {ident!r}")
    seen.add(ident)
    return ident


def _ref(r: _Reader, key: str, table: Mapping[str, Any], what: str) -> Any:
    """The entity a `<what>_id` field names, or None; an unknown id is an error with the path."""
    ident = r.get(key, str, None)
    if ident is None or ident == "":
        return None
    found = table.get(ident)
    if found is None:
        known = ", ".join(sorted(table)) or "none defined"
        raise ConfigError(
            f"{r.path}.{key}",
            f"no {what} with id {ident!r}{fields.suggest(ident, table)} (governance.{what}s: {known})",
        )
    return found


def _budget(r: _Reader) -> Budget:
    max_limit = r.get("max_limit", float)
    if max_limit < 0:
        raise ConfigError(f"{r.path}.max_limit", f"must be zero or more (dollars), got {max_limit}")
    return Budget(
        id=r.data["id"],
        max_limit=max_limit,
        reset_duration=_duration(r, "reset_duration", True) or "",
        calendar_aligned=r.get("calendar_aligned", bool, False),
    )


def _rate_limit(r: _Reader) -> RateLimit:
    out: dict[str, Any] = {}
    for kind in ("token", "request"):
        limit = r.get(f"{kind}_max_limit", int, None)
        duration = _duration(r, f"{kind}_reset_duration", False)
        if limit is not None and limit <= 0:
            raise ConfigError(f"{r.path}.{kind}_max_limit", f"must be greater than zero, got {limit}")
        if (limit is None) != (duration is None):
            missing, given = ("reset_duration", "max_limit") if duration is None else ("max_limit", "reset_duration")
            raise ConfigError(f"{r.path}.{kind}_{missing}", f"is required with {kind}_{given}")
        out[f"{kind}_max_limit"] = limit
        out[f"{kind}_reset_duration"] = duration
    return RateLimit(id=r.data["id"], **out)


def _expires_at(r: _Reader) -> float | None:
    value = r.get("expires_at", str, None)
    if value is None or value == "":
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"{r.path}.expires_at", f"expected an RFC 3339 time such as 2026-12-31T23:59:59Z, got {value!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # Go stores UTC; a time without offset is read as UTC
    return when.timestamp()


def _string_list(r: _Reader, key: str) -> list[str] | None:
    value = r.get(key, list, None)
    if value is None:
        return None
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ConfigError(f"{r.path}.{key}[{i}]", f"expected a string, got {_type_name(item)}")
    return value


def _provider_config(
    r: _Reader,
    budgets: Mapping[str, Budget],
    rate_limits: Mapping[str, RateLimit],
    providers: Mapping[str, ProviderConfig],
    warnings: list[str],
) -> VirtualKeyProvider:
    r.check(VK_PROVIDER_FIELDS, _go_fields({"$ref": "#/$defs/virtual_key_provider_config"}), warnings)
    provider = r.get("provider", str)
    if provider not in providers:
        warnings.append(
            f"{r.path}.provider: provider '{provider}' is not configured; requests this key routes to it fail"
        )
    weight = r.get("weight", float, 1.0)
    if weight < 0:
        raise ConfigError(f"{r.path}.weight", f"must be zero or more, got {weight}")
    models = _string_list(r, "allowed_models") or []
    allowed_keys = _string_list(r, "allowed_keys")
    keys = r.get("keys", list, None)
    if keys is not None:
        names = list(allowed_keys or [])
        for i, item in enumerate(keys):
            where = f"{r.path}.keys[{i}]"
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
                raise ConfigError(f"{where}.name", "is required: the name of the provider key this virtual key may use")
            names.append(item["name"])
        warnings.append(f"{r.path}.keys: read by name only (the provider keys this virtual key may use)")
        allowed_keys = names
    if allowed_keys is not None and provider in providers:
        known = {k.name for k in providers[provider].keys}
        for name in allowed_keys:
            if name not in known:
                warnings.append(
                    f"{r.path}: allowed key '{name}' is not a key of provider '{provider}' (or was skipped); "
                    "it admits nothing"
                )
    return VirtualKeyProvider(
        provider=provider,
        weight=weight,
        allowed_models=() if "*" in models else tuple(models),
        allowed_keys=None if allowed_keys is None or "*" in allowed_keys else frozenset(allowed_keys),
        budget=_ref(r, "budget_id", budgets, "budget"),
        rate_limit=_ref(r, "rate_limit_id", rate_limits, "rate_limit"),
    )


def _virtual_key(
    r: _Reader,
    cfg: dict[str, Any],
    providers: Mapping[str, ProviderConfig],
    warnings: list[str],
    seen_ids: set[str],
    seen_digests: dict[bytes, str],
) -> VirtualKey | None:
    r.check(VK_FIELDS, _go_fields(_go_item("virtual_keys")), warnings, _go_item("virtual_keys"))
    ident = _id(r, seen_ids)
    try:
        value = r.get("value", str, None, env=True)
    except MissingEnv as exc:
        warnings.append(f"{r.path}: skipped, environment variable {exc.variable} is not set")
        return None
    reference = r.reference("value")
    shown = f" (read from {reference})" if reference else ""
    stored = r.get("value_sha256", str, None)
    if stored is not None:
        # Our extension: keys created by the admin API are stored as their digest only (shown once).
        if value is not None:
            raise ConfigError(f"{r.path}.value_sha256", "give either value or value_sha256, not both")
        if not re.fullmatch(r"[0-9a-f]{64}", stored):
            raise ConfigError(f"{r.path}.value_sha256", "expected 64 lower-case hex digits (a SHA-256 digest)")
        value = ""
    if not value and stored is None:
        raise ConfigError(f"{r.path}.value", f"is required: the key clients present, starting with {VK_PREFIX}")
    if stored is None and value[: len(VK_PREFIX)].lower() != VK_PREFIX:
        # Go Bifrost reads only sk-bf- values from the SDKs' key headers; x-bf-vk takes any value.
        warnings.append(
            f"{r.path}.value does not start with {VK_PREFIX}{shown}: clients can present it only in the x-bf-vk "
            "header, not as an SDK's API key"
        )
    key_digest = bytes.fromhex(stored) if stored is not None else digest(value)
    if key_digest in seen_digests:
        raise ConfigError(f"{r.path}.value", f"the same value as virtual key '{seen_digests[key_digest]}'{shown}")
    seen_digests[key_digest] = ident
    team = _ref(r, "team_id", cfg["teams"], "team")
    customer = _ref(r, "customer_id", cfg["customers"], "customer")
    if team is not None and customer is not None:
        raise ConfigError(f"{r.path}.customer_id", "a virtual key belongs to a team or a customer, not both")
    pcs: list[VirtualKeyProvider] = []
    seen_providers: set[str] = set()
    for path, item in _items(r, "provider_configs"):
        pc = _provider_config(_Reader(item, path, r.environ), cfg["budgets"], cfg["rate_limits"], providers, warnings)
        if pc.provider in seen_providers:
            raise ConfigError(f"{path}.provider", f"provider '{pc.provider}' appears twice in provider_configs")
        seen_providers.add(pc.provider)
        pcs.append(pc)
    return VirtualKey(
        id=ident,
        name=r.get("name", str, "") or ident,  # Go's schema requires it; its own example omits it
        value_digest=key_digest,
        description=r.get("description", str, ""),
        is_active=r.get("is_active", bool, True),
        expires_at=_expires_at(r),
        team_id=team.id if team is not None else None,
        customer_id=customer.id if customer is not None else None,
        budget=_ref(r, "budget_id", cfg["budgets"], "budget"),
        rate_limit=_ref(r, "rate_limit_id", cfg["rate_limits"], "rate_limit"),
        provider_configs=tuple(pcs),
    )


def parse_governance(
    data: Any, environ: Mapping[str, str], providers: Mapping[str, ProviderConfig], warnings: list[str]
) -> GovernanceConfig | None:
    """The `governance` block (None when absent). Warnings are appended to `warnings`."""
    if data is None:
        return None
    r = _Reader(data, "governance", environ)
    r.check(GOV_FIELDS, _go_fields(_GOV), warnings, _GOV)
    cfg: dict[str, Any] = {"budgets": {}, "rate_limits": {}, "customers": {}, "teams": {}}
    seen: set[str] = set()
    for path, item in _items(r, "budgets"):
        br = _Reader(item, path, environ)
        br.check(BUDGET_FIELDS, _go_fields(_go_item("budgets")), warnings)
        cfg["budgets"][_id(br, seen)] = _budget(br)
    seen = set()
    for path, item in _items(r, "rate_limits"):
        rr = _Reader(item, path, environ)
        rr.check(RATE_LIMIT_FIELDS, _go_fields(_go_item("rate_limits")), warnings)
        cfg["rate_limits"][_id(rr, seen)] = _rate_limit(rr)
    seen = set()
    for path, item in _items(r, "customers"):
        cr = _Reader(item, path, environ)
        cr.check(CUSTOMER_FIELDS, _go_fields(_go_item("customers")), warnings)
        ident = _id(cr, seen)
        cfg["customers"][ident] = Customer(
            id=ident,
            name=cr.get("name", str),
            budget=_ref(cr, "budget_id", cfg["budgets"], "budget"),
            rate_limit=_ref(cr, "rate_limit_id", cfg["rate_limits"], "rate_limit"),
        )
    seen = set()
    for path, item in _items(r, "teams"):
        tr = _Reader(item, path, environ)
        tr.check(TEAM_FIELDS, _go_fields(_go_item("teams")), warnings)
        ident = _id(tr, seen)
        customer = _ref(tr, "customer_id", cfg["customers"], "customer")
        cfg["teams"][ident] = Team(
            id=ident,
            name=tr.get("name", str),
            customer_id=customer.id if customer is not None else None,
            budget=_ref(tr, "budget_id", cfg["budgets"], "budget"),
            rate_limit=_ref(tr, "rate_limit_id", cfg["rate_limits"], "rate_limit"),
        )
    keys: list[VirtualKey] = []
    seen = set()
    digests: dict[bytes, str] = {}
    for path, item in _items(r, "virtual_keys"):
        vk = _virtual_key(_Reader(item, path, environ), cfg, providers, warnings, seen, digests)
        if vk is not None:
            keys.append(vk)
    return GovernanceConfig(
        budgets=MappingProxyType(cfg["budgets"]),
        rate_limits=MappingProxyType(cfg["rate_limits"]),
        customers=MappingProxyType(cfg["customers"]),
        teams=MappingProxyType(cfg["teams"]),
        virtual_keys=tuple(keys),
    )

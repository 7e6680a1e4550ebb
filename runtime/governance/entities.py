"""The governed entities of config.json's `governance` block: virtual keys, teams, customers.

Built once by the loader (runtime/config/governance.py) and only read afterwards; every object is a
frozen dataclass of tuples, frozen maps and bytes so that GatewayConfig stays picklable for spawned
workers. A virtual key keeps only the SHA-256 digest of its value: the plaintext is never stored,
logged or shown again once the loader has hashed it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from runtime.governance.model import Budget, RateLimit

# Go Bifrost's prefix: only header values starting with it are read as virtual keys.
VK_PREFIX = "sk-bf-"


def digest(value: str) -> bytes:
    """The look-up digest of a virtual key's value (Go Bifrost also indexes keys by SHA-256)."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def _frozen(value: Mapping | None = None) -> MappingProxyType:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True, slots=True)
class VirtualKeyProvider:
    """One `provider_configs[i]` of a virtual key: a provider it may use, and on what terms.

    `allowed_models` empty means every model (Go's schema: "empty means all models allowed"; `["*"]`
    is read the same way). `allowed_keys` None means every key of the provider; a set restricts the
    provider keys (by name) a request of this virtual key may be sent with.
    """

    provider: str
    weight: float = 1.0
    allowed_models: tuple[str, ...] = ()
    allowed_keys: frozenset[str] | None = None
    budget: Budget | None = None
    rate_limit: RateLimit | None = None

    def allows(self, model: str) -> bool:
        """Whether this config admits `model` (an entry may also be written `provider/model`)."""
        allowed = self.allowed_models
        return not allowed or model in allowed or f"{self.provider}/{model}" in allowed


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str
    budget: Budget | None = None
    rate_limit: RateLimit | None = None


@dataclass(frozen=True, slots=True)
class Team:
    id: str
    name: str
    customer_id: str | None = None
    budget: Budget | None = None
    rate_limit: RateLimit | None = None


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """A virtual key. `value_digest` is sha256(value); `expires_at` is Unix seconds (None: never)."""

    id: str
    name: str
    value_digest: bytes
    description: str = ""
    is_active: bool = True
    expires_at: float | None = None
    team_id: str | None = None
    customer_id: str | None = None
    budget: Budget | None = None
    rate_limit: RateLimit | None = None
    provider_configs: tuple[VirtualKeyProvider, ...] = ()

    def provider_config(self, provider: str) -> VirtualKeyProvider | None:
        for pc in self.provider_configs:
            if pc.provider == provider:
                return pc
        return None

    def __repr__(self) -> str:  # never print the digest either: it is a look-up handle for the key
        return f"VirtualKey(id={self.id!r}, name={self.name!r}, is_active={self.is_active})"


@dataclass(frozen=True, slots=True)
class GovernanceConfig:
    """The parsed `governance` block plus the switches that decide whether keyless requests pass."""

    budgets: Mapping[str, Budget] = field(default_factory=_frozen)
    rate_limits: Mapping[str, RateLimit] = field(default_factory=_frozen)
    customers: Mapping[str, Customer] = field(default_factory=_frozen)
    teams: Mapping[str, Team] = field(default_factory=_frozen)
    virtual_keys: tuple[VirtualKey, ...] = ()

    def team(self, team_id: str | None) -> Team | None:
        return self.teams.get(team_id) if team_id else None

    def customer_of(self, vk: VirtualKey) -> Customer | None:
        """The key's customer: its own, else its team's."""
        customer_id = vk.customer_id
        if customer_id is None:
            team = self.team(vk.team_id)
            customer_id = team.customer_id if team is not None else None
        return self.customers.get(customer_id) if customer_id else None

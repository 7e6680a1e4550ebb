"""What governance counts against: budgets, rate limits, and the caller a request is governed as.

These are the contract between the auth side (`runtime/governance/` plugin that turns a virtual key into
a `Caller`) and the limits side (the ledger that reserves and settles against the caller's budgets and
rate limits). Field names follow Go Bifrost's `governance.budgets` / `governance.rate_limits` schema.
Durations are Go's strings (`30s`, `5m`, `1h`, `1d`, `1w`, `1M`, `1Y`), parsed where they are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Budget:
    """A dollar ceiling over a repeating period. `id` is unique across the config."""

    id: str
    max_limit: float
    reset_duration: str
    calendar_aligned: bool = False


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Requests and/or tokens per period; a limit left None is not enforced."""

    id: str
    request_max_limit: int | None = None
    request_reset_duration: str | None = None
    token_max_limit: int | None = None
    token_reset_duration: str | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a governed request is charged to, as an auth hook sets it on `ctx.caller`.

    `budgets` and `rate_limits` are the whole chain that applies to this request, most specific first
    (the provider config inside the key, the key, its team, the team's customer); every one must admit
    the request. The ids name the owners for logs, metrics and errors.
    """

    virtual_key_id: str
    virtual_key_name: str = ""
    team_id: str | None = None
    customer_id: str | None = None
    budgets: tuple[Budget, ...] = field(default=())
    rate_limits: tuple[RateLimit, ...] = field(default=())

"""The gateway's configuration as frozen, slotted dataclasses.

Everything here is built once at start-up (or on an admin change) and then only read, so the hot path
can look fields up without locks or copies. The shapes follow the Go Bifrost `config.json` schema for
every part this runtime implements, so a user can bring their file across.
"""

from __future__ import annotations

import copyreg
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runtime.governance.entities import GovernanceConfig


def _frozen_map(value: Mapping | None = None) -> MappingProxyType:
    return MappingProxyType(dict(value or {}))


def _pickle_frozen_map(value: MappingProxyType) -> tuple[Callable[..., MappingProxyType], tuple[dict]]:
    return _frozen_map, (dict(value),)


# Worker processes started with `spawn` (macOS, Windows, BIFROST_MP_START=spawn) receive the config by
# pickle; MappingProxyType does not pickle by itself, so it travels as the dict it wraps (read-only again
# on arrival). Registered here, where the frozen maps are made, so any pickle of a config works.
copyreg.pickle(MappingProxyType, _pickle_frozen_map)


@dataclass(frozen=True, slots=True)
class AzureKeyConfig:
    """Where an Azure OpenAI key is valid: the resource endpoint and its model -> deployment map."""

    endpoint: str
    deployments: Mapping[str, str] = field(default_factory=_frozen_map)
    api_version: str = "2024-10-21"


@dataclass(frozen=True, slots=True)
class KeyConfig:
    """One provider credential. `models` empty means the key may serve every model."""

    name: str
    value: str
    models: tuple[str, ...] = ()
    weight: float = 1.0
    azure: AzureKeyConfig | None = None
    # Native providers (issue 4) keep their extra credential fields here, untouched by the core.
    extra: Mapping[str, object] = field(default_factory=_frozen_map)

    def allows(self, model: str) -> bool:
        # The loader turns Go Bifrost's ["*"] into () ("every model"); "*" is also honoured if built by hand.
        return not self.models or model in self.models or "*" in self.models


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """How to reach a provider and how patient to be with it.

    Timeouts: `connect_timeout_in_seconds` bounds the TCP/TLS connect; `first_byte_timeout_in_seconds`
    bounds the wait for the response headers; `default_request_timeout_in_seconds` bounds a whole
    non-streaming attempt; `first_token_timeout_in_seconds` bounds a stream's wait from its headers to
    its first event (keep-alive comments do not count), so a provider that answers headers and then
    thinks forever fails over; `stream_idle_timeout_in_seconds` bounds the gap between two stream chunks.
    A stream has no total bound: long generations are legitimate, a silent upstream is not.
    """

    base_url: str | None = None
    extra_headers: Mapping[str, str] = field(default_factory=_frozen_map)
    default_request_timeout_in_seconds: float = 30.0
    connect_timeout_in_seconds: float = 10.0
    first_byte_timeout_in_seconds: float | None = None  # None: the request timeout
    first_token_timeout_in_seconds: float | None = None  # None: the request timeout
    stream_idle_timeout_in_seconds: float = 60.0
    max_retries: int = 0
    retry_backoff_initial_ms: int = 500
    retry_backoff_max_ms: int = 5000

    @property
    def first_byte_timeout(self) -> float:
        if self.first_byte_timeout_in_seconds is None:
            return self.default_request_timeout_in_seconds
        return self.first_byte_timeout_in_seconds

    @property
    def first_token_timeout(self) -> float:
        if self.first_token_timeout_in_seconds is None:
            return self.default_request_timeout_in_seconds
        return self.first_token_timeout_in_seconds


@dataclass(frozen=True, slots=True)
class PricingOverride:
    """One `providers.<name>.pricing_overrides[i]` (Go Bifrost's field): prices that replace the catalog's
    for the models `model_pattern` matches (runtime/core/cost.py applies them, Go's precedence)."""

    model_pattern: str
    match_type: str  # "exact" | "wildcard" | "regex"
    request_types: tuple[str, ...] = ()  # Go's request types (chat_completion, embedding, ...); () = all
    # Go field name (input_cost_per_token, cache_read_input_token_cost, ...) -> US dollars
    prices: Mapping[str, float] = field(default_factory=_frozen_map)


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """`providers.<name>.circuit_breaker` (ours, not in Go's schema): when a key or a provider+model is
    skipped for failing (runtime/core/health.py). On by default with these values."""

    enabled: bool = True
    consecutive_failures: int = 5  # this many failures in a row open the breaker
    error_rate: float = 0.5  # ... or this share of failed attempts in the window,
    min_requests: int = 20  # ... once the window holds at least this many attempts
    window_seconds: float = 30.0  # the sliding window of the error rate (and the adaptive balancer's latency)
    cooldown_seconds: float = 30.0  # how long an open breaker skips before one probe is let through
    max_cooldown_seconds: float = 300.0  # a failed probe doubles the cooldown, up to this


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """A configured provider: `name` is what users write before the slash, `kind` picks the adapter."""

    name: str
    kind: str
    keys: tuple[KeyConfig, ...] = ()
    network: NetworkConfig = field(default_factory=NetworkConfig)
    concurrency: int = 1000
    buffer_size: int = 5000
    # Models this provider is known to serve (from config); empty means "whatever the upstream has".
    models: tuple[str, ...] = ()
    # Failure class -> action (runtime/core/failover.py); classes not listed take the defaults there.
    failure_policy: Mapping[str, str] = field(default_factory=_frozen_map)
    circuit_breaker: BreakerConfig = field(default_factory=BreakerConfig)
    # "weighted" (keys drawn by their weights) or "adaptive" (weights scaled by latency and error rate).
    load_balancing: str = "weighted"
    # Whether the concurrency/buffer figures came from the user's file (they then beat the profile).
    explicit_lane: bool = False
    extra: Mapping[str, object] = field(default_factory=_frozen_map)
    # Environment variables whose absence left this provider without any key (every key was skipped,
    # as Go Bifrost does); its requests then fail with an error naming them.
    missing_env: tuple[str, ...] = ()
    pricing_overrides: tuple[PricingOverride, ...] = ()
    # `supports_assistant_prefill`: whether this provider may continue a broken stream from the text already
    # delivered (runtime/core/resume.py); None: its ProviderSpec's capability. True on an OpenAI-compatible
    # provider without one sends vLLM/SGLang's `continue_final_message`.
    supports_assistant_prefill: bool | None = None


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Gateway-wide behaviour (the Go schema's `client` block)."""

    drop_excess_requests: bool = False
    initial_pool_size: int = 10_000
    enable_logging: bool = True
    disable_content_logging: bool = False
    log_retention_days: int = 30
    max_request_body_size_mb: float = 100.0
    # Go Bifrost's CORS list: origins whose pages may call the gateway ("*" for any).
    allowed_origins: tuple[str, ...] = ()
    # Bifrost-Python extensions (not in Go's schema; documented in docs/limits.md). Each bounds what an
    # untrusted client or upstream can make the gateway hold: time, memory or disk.
    max_log_content_kb: int = 256  # per logged input/output text; longer content is cut with a marker
    max_upstream_response_mb: float = 64.0  # a non-streaming upstream answer, after gzip inflation
    max_request_bodies_in_flight_mb: float = 256.0  # all request bodies being read at once, together
    header_read_timeout_in_seconds: float = 10.0  # request line + headers of a new request
    body_read_timeout_in_seconds: float = 60.0  # the whole request body once headers are in
    keepalive_idle_timeout_in_seconds: float = 60.0  # an idle client connection between requests
    stream_write_timeout_in_seconds: float = 30.0  # a stream whose client stops reading is ended after this
    shutdown_grace_in_seconds: float | None = None  # None: the tuning profile's grace (30 s)
    # Provider base_urls may point at private and loopback addresses (local models); false refuses them.
    # Link-local and cloud-metadata addresses are refused always.
    allow_private_base_urls: bool = True
    # Go Bifrost's switch: inference requests without a valid virtual key get 401 (runtime/governance/).
    enforce_auth_on_inference: bool = False
    # One deadline for a whole request's attempts, retries, backoff waits and fallbacks (up to a stream's
    # first event); None: each attempt is bounded by its own timeouts only (docs/failover.md).
    request_deadline_in_seconds: float | None = None
    # model string -> larger-context targets to try when that model answers "context length exceeded"
    # (runtime/core/failover.py `larger_context`), e.g. {"openai/gpt-4o-mini": ["openai/gpt-4.1-mini"]}.
    context_window_fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=_frozen_map)
    # A chat stream that breaks after its first byte continues on the next target (runtime/core/resume.py);
    # a request may turn it off with the header `x-bf-stream-resume: off`.
    stream_resume: bool = True


@dataclass(frozen=True, slots=True)
class Tuning:
    """Knobs a tuning profile sets (see bifrost_cli/profiles.py); defaults suit a small machine."""

    profile: str = "default"
    default_concurrency: int = 1000
    default_buffer_size: int = 5000
    connection_pool_limit: int = 0  # 0 = unlimited sockets in the upstream pool
    connection_pool_limit_per_host: int = 0
    keepalive_timeout_s: float = 30.0
    listen_backlog: int = 2048
    log_batch_size: int = 1000
    log_flush_interval_ms: int = 100
    shutdown_grace_s: float = 30.0
    idle_spin_us: int = 0  # longest busy-poll of the loop after traffic (runtime/http/idlespin.py); 0 = off


@dataclass(frozen=True, slots=True)
class PluginConfig:
    """One `plugins[i]` entry of config.json (runtime/plugins/registry.py finds the plugin by name)."""

    name: str
    enabled: bool = True
    config: Mapping[str, Any] = field(default_factory=_frozen_map)


@dataclass(frozen=True, slots=True)
class GroupTarget:
    """One `model_groups.<name>.targets[i]`: a configured provider's model and its share of the traffic."""

    provider: str
    model: str  # the upstream model name (after `provider/`)
    weight: float = 1.0

    @property
    def name(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True, slots=True)
class ModelGroup:
    """config.json `model_groups.<name>` (ours, not Go Bifrost's): a model name clients may ask for, served
    by weighted targets, each failing over to the others (heaviest first) and then to `fallbacks`."""

    name: str
    targets: tuple[GroupTarget, ...]
    fallbacks: tuple[GroupTarget, ...] = ()  # weight unused
    strategy: str = "weighted"  # "weighted" | "adaptive" (runtime/core/groups.py)


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """`shared_state.config` of the Redis engine: Go Bifrost's `redis_config` fields (config/shared_state.py)."""

    host: str
    port: int = 6379
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a repr, a log line or a message
    db: int = 0
    key_prefix: str = "bifrost:"
    timeout_s: float = 3.0  # context_timeout: the bound on every operation
    connect_timeout_s: float = 2.0  # dial_timeout
    socket_timeout_s: float | None = None  # read_timeout / write_timeout (the larger); None: timeout_s
    max_connections: int = 32  # pool_size (or max_active_conns)


@dataclass(frozen=True, slots=True)
class SharedStateConfig:
    """config.json `shared_state`: which engine holds what workers and instances share."""

    type: str = "sqlite"
    redis: RedisSettings | None = None
    # What governance does when the store cannot answer (docs/failure-policy.md): "fail_closed" refuses
    # the requests that need it (503), "fail_open" admits them and records their spend as owed.
    failure_policy: str = "fail_closed"


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    """`config_store.config` / `logs_store.config` of the postgres engine: Go Bifrost's fields
    (runtime/config/stores.py)."""

    host: str
    port: int = 5432
    user: str = "bifrost"
    password: str = field(default="", repr=False)  # never in a repr, a log line or a message
    database: str = "bifrost"  # db_name
    ssl_mode: str = "disable"
    max_open_conns: int = 10  # connections per worker process, at most
    max_idle_conns: int = 2  # connections kept open when idle

    def describe(self) -> str:
        """How messages name the server: host, port and database, never the password."""
        return f"postgres {self.host}:{self.port}/{self.database}"


@dataclass(frozen=True, slots=True)
class StoresConfig:
    """Where the config document and the request log live (None: the embedded SQLite engines), and the
    passphrase secrets are encrypted with at rest (config.json `encryption_key`)."""

    config: PostgresSettings | None = None
    logs: PostgresSettings | None = None
    encryption_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything `runtime.run` needs. Built by the CLI (or a test) and never mutated."""

    host: str = "127.0.0.1"
    port: int = 8080
    app_dir: Path = Path(".")
    log_level: str = "info"
    workers: int = 1
    providers: Mapping[str, ProviderConfig] = field(default_factory=_frozen_map)
    client: ClientConfig = field(default_factory=ClientConfig)
    tuning: Tuning = field(default_factory=Tuning)
    # The parsed config.json as loaded (secrets still as `env.NAME`), so the admin API can persist it.
    raw: Mapping[str, object] = field(default_factory=_frozen_map)
    # One line per config.json field that is accepted but has no effect here (Go Bifrost fields this
    # runtime does not implement, keys skipped for an unset env.NAME, ...): printed at start-up, by
    # `bifrost config validate`, and returned by GET /api/config.
    warnings: tuple[str, ...] = ()
    plugins: tuple[PluginConfig, ...] = ()  # config.json `plugins`, checked against the registry
    shared_state: SharedStateConfig | None = None  # config.json `shared_state`; None: the embedded engine
    stores: StoresConfig = field(default_factory=StoresConfig)  # config_store / logs_store / encryption_key
    governance: GovernanceConfig | None = None  # config.json `governance` (virtual keys, teams, budgets...)
    model_groups: Mapping[str, ModelGroup] = field(default_factory=_frozen_map)  # config.json `model_groups`
    # config.json `guardrails_config` (runtime/guardrails/types.py GuardrailsConfig); None: no guardrails.
    guardrails: Any = None

    @property
    def config_path(self) -> Path:
        return Path(self.app_dir) / "config.json"

    @property
    def log_db_path(self) -> Path:
        return Path(self.app_dir) / "logs.db"

    @property
    def shutdown_grace_s(self) -> float:
        """How long a stop waits for in-flight requests and streams: the file's setting, else the profile's."""
        grace = self.client.shutdown_grace_in_seconds
        return self.tuning.shutdown_grace_s if grace is None else grace

"""Known providers as one table: name -> how to reach it and which adapter speaks its format.

Adding an OpenAI-compatible provider is one row. `base_url` is the default base that a user's
`network_config.base_url` replaces as a whole (for OpenAI that is exactly the origin); the adapter
appends `path_prefix` and the documented path (`/chat/completions`, ...). This is the Go Bifrost rule,
so a user's existing `base_url` values keep working. Go's docs write base_url without the version
(`/v1`) but users write both, so `join_base` appends `path_prefix` only when the base does not already
end with it: `https://api.openai.com` and `https://api.openai.com/v1` both reach `/v1/chat/completions`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    name: str
    kind: str  # which adapter: "openai", "azure", "mock", "anthropic", "gemini", ...
    base_url: str | None  # None: the user must give one (or it is per key, as for Azure)
    path_prefix: str = "/v1"
    env_key: str | None = None  # environment variable that enables the provider with no config file
    key_required: bool = True
    # Whether the upstream accepts `stream_options.include_usage` (so usage can always be logged).
    stream_usage_option: bool = True
    label: str = ""
    # Well-known model names (from the provider's public model list), advertised by /v1/models and
    # used to route a bare model name when the provider's config lists no models of its own.
    default_models: tuple[str, ...] = ()
    # Zero-config start for providers whose credentials are several variables: ("block.field", VAR) pairs
    # copied into the key made from `env_key` (e.g. bedrock_key_config.secret_key <- AWS_SECRET_ACCESS_KEY).
    env_config: tuple[tuple[str, str], ...] = ()
    # How this provider continues a partial assistant answer (mid-stream recovery, runtime/core/resume.py):
    # "trailing_assistant" (Anthropic: a last assistant turn is continued), "prefix" (Mistral: `"prefix": true`
    # on that message), "continue_final_message" (vLLM/SGLang: `continue_final_message: true,
    # add_generation_prompt: false`); None: it cannot (a provider's `supports_assistant_prefill` overrides).
    prefill: str | None = None


_OPENAI_COMPATIBLE = (
    ProviderSpec(
        "openai",
        "openai",
        "https://api.openai.com",
        env_key="OPENAI_API_KEY",
        label="OpenAI",
        default_models=(
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4.1-nano",
            "o3-mini",
            "text-embedding-3-small",
            "text-embedding-3-large",
            "gpt-3.5-turbo-instruct",
        ),
    ),
    ProviderSpec(
        "groq",
        "openai",
        "https://api.groq.com/openai",
        env_key="GROQ_API_KEY",
        label="Groq",
        default_models=("llama-3.3-70b-versatile", "llama-3.1-8b-instant"),
    ),
    ProviderSpec(
        "mistral",
        "openai",
        "https://api.mistral.ai",
        env_key="MISTRAL_API_KEY",
        stream_usage_option=False,
        prefill="prefix",
        label="Mistral",
        default_models=("mistral-large-latest", "mistral-small-latest", "mistral-embed"),
    ),
    ProviderSpec("openrouter", "openai", "https://openrouter.ai/api", env_key="OPENROUTER_API_KEY", label="OpenRouter"),
    ProviderSpec("together", "openai", "https://api.together.xyz", env_key="TOGETHER_API_KEY", label="Together AI"),
    ProviderSpec(
        "fireworks", "openai", "https://api.fireworks.ai/inference", env_key="FIREWORKS_API_KEY", label="Fireworks AI"
    ),
    ProviderSpec(
        "deepseek",
        "openai",
        "https://api.deepseek.com",
        env_key="DEEPSEEK_API_KEY",
        label="DeepSeek",
        default_models=("deepseek-chat", "deepseek-reasoner"),
    ),
    ProviderSpec("xai", "openai", "https://api.x.ai", env_key="XAI_API_KEY", label="xAI"),
    ProviderSpec("cerebras", "openai", "https://api.cerebras.ai", env_key="CEREBRAS_API_KEY", label="Cerebras"),
    # Perplexity documents its routes without the /v1 prefix.
    ProviderSpec(
        "perplexity",
        "openai",
        "https://api.perplexity.ai",
        path_prefix="",
        env_key="PERPLEXITY_API_KEY",
        stream_usage_option=False,
        label="Perplexity",
    ),
    # Local servers: no key, and a default address on this machine.
    ProviderSpec("ollama", "openai", "http://localhost:11434", key_required=False, label="Ollama"),
    ProviderSpec(
        "vllm", "openai", "http://localhost:8000", key_required=False, prefill="continue_final_message", label="vLLM"
    ),
    ProviderSpec(
        "sglang",
        "openai",
        "http://localhost:30000",
        key_required=False,
        prefill="continue_final_message",
        label="SGLang",
    ),
    # Go Bifrost's name for SGLang, so a Go config.json works unchanged.
    ProviderSpec(
        "sgl",
        "openai",
        "http://localhost:30000",
        key_required=False,
        prefill="continue_final_message",
        label="SGLang (Go Bifrost's name: sgl)",
    ),
    ProviderSpec("lmstudio", "openai", "http://localhost:1234", key_required=False, label="LM Studio"),
)

_OTHERS = (
    ProviderSpec("azure", "azure", None, path_prefix="", env_key="AZURE_API_KEY", label="Azure OpenAI"),
    ProviderSpec(
        "mock",
        "mock",
        None,
        path_prefix="",
        key_required=False,
        stream_usage_option=True,
        label="Mock (built in, no network: deterministic answers for trying and benchmarking)",
    ),
)

# Native formats (runtime/providers/<kind>.py). `{region}` in a base URL is filled from the key's config;
# a user's network_config.base_url replaces the whole origin (tests point it at 127.0.0.1).
_NATIVE = (
    ProviderSpec(
        "anthropic",
        "anthropic",
        "https://api.anthropic.com",
        env_key="ANTHROPIC_API_KEY",
        stream_usage_option=False,
        prefill="trailing_assistant",
        label="Anthropic",
        default_models=("claude-sonnet-4-5", "claude-opus-4-1", "claude-3-5-haiku-latest"),
    ),
    ProviderSpec(
        "gemini",
        "gemini",
        "https://generativelanguage.googleapis.com",
        path_prefix="/v1beta",
        env_key="GEMINI_API_KEY",
        stream_usage_option=False,
        label="Google Gemini",
        default_models=(
            "gemini-2.5-flash",
            "gemini-2.5-pro",
            "gemini-2.0-flash",
            "gemini-embedding-001",
            "text-embedding-004",
        ),
    ),
    # Keys hold a service account in vertex_key_config (project_id, region, auth_credentials).
    ProviderSpec(
        "vertex",
        "vertex",
        "https://{region}-aiplatform.googleapis.com",
        path_prefix="/v1",
        key_required=False,
        stream_usage_option=False,
        label="Google Vertex AI",
        default_models=("gemini-2.5-flash", "gemini-2.5-pro", "claude-sonnet-4-5@20250929", "text-embedding-005"),
    ),
    # Keys hold SigV4 credentials in bedrock_key_config (or a Bedrock API key in `value`).
    ProviderSpec(
        "bedrock",
        "bedrock",
        "https://bedrock-runtime.{region}.amazonaws.com",
        path_prefix="",
        key_required=False,
        stream_usage_option=False,
        label="AWS Bedrock",
        env_key="AWS_ACCESS_KEY_ID",
        env_config=(
            ("bedrock_key_config.access_key", "AWS_ACCESS_KEY_ID"),
            ("bedrock_key_config.secret_key", "AWS_SECRET_ACCESS_KEY"),
            ("bedrock_key_config.session_token", "AWS_SESSION_TOKEN"),
            ("bedrock_key_config.region", "AWS_DEFAULT_REGION"),
            ("bedrock_key_config.region", "AWS_REGION"),
        ),
        default_models=(
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "amazon.nova-pro-v1:0",
            "meta.llama3-1-70b-instruct-v1:0",
            "amazon.titan-embed-text-v2:0",
            "cohere.embed-english-v3",
        ),
    ),
    ProviderSpec(
        "cohere",
        "cohere",
        "https://api.cohere.com",
        path_prefix="/v2",
        env_key="COHERE_API_KEY",
        stream_usage_option=False,
        label="Cohere",
        default_models=(
            "command-a-03-2025",
            "command-r-plus-08-2024",
            "command-r7b-12-2024",
            "embed-v4.0",
            "embed-english-v3.0",
        ),
    ),
)

PROVIDER_SPECS: dict[str, ProviderSpec] = {spec.name: spec for spec in (*_OPENAI_COMPATIBLE, *_OTHERS, *_NATIVE)}


@functools.lru_cache(maxsize=512)
def join_base(base_url: str | None, path_prefix: str) -> str:
    """`base_url` + the provider's version prefix, exactly once (no `/v1/v1/...`).

    A base whose PATH already ends with the prefix (`http://localhost:11434/v1`, Groq's
    `https://api.groq.com/openai/v1`) is used as is; otherwise the prefix is appended (Groq's default
    `https://api.groq.com/openai` -> `/openai/v1`). Trailing slashes are dropped first. Cached: the
    same few bases are joined on every request.
    """
    base = (base_url or "").rstrip("/")
    if path_prefix and urlsplit(base).path.endswith(path_prefix):
        return base
    return base + path_prefix


def register_spec(spec: ProviderSpec) -> None:
    """Add a provider row (native adapters register theirs when their module is imported)."""
    PROVIDER_SPECS[spec.name] = spec


def custom_spec(name: str, base_provider_type: str, base_url: str | None) -> ProviderSpec:
    """A user-declared provider that speaks an existing format at its own address."""
    base = PROVIDER_SPECS.get(base_provider_type)
    if base is None:
        raise KeyError(base_provider_type)
    return ProviderSpec(
        name=name,
        kind=base.kind,
        base_url=base_url,
        path_prefix=base.path_prefix if base.kind != "openai" else "/v1",
        key_required=False,
        stream_usage_option=base.stream_usage_option,
        prefill=base.prefill,
        label=f"{name} (custom, {base_provider_type} format)",
    )

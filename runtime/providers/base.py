"""The adapter interface: how the core talks to any provider.

An adapter is a pure translator between the gateway's internal format (OpenAI's chat, completions and
embeddings shapes, as parsed dicts) and one provider's wire format. `build_request`, `parse_response`,
`parse_error` and the stream translator never touch the network, the clock or globals; the core's
upstream step sends what `build_request` returns. That keeps every adapter testable from JSON fixtures.

Adapters marked `local` (the mock) answer in-process through `respond` and never reach `upstream`.

`Adapter` is the whole contract: every attribute and method the engine, router and HTTP layer use on
an adapter is declared there. `AdapterBase` holds the defaults most adapters share (not local, no
signing, the configured models list); subclassing it is optional.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import aiohttp

    from runtime.config.model import KeyConfig, ProviderConfig
    from runtime.errors import GatewayError, ProviderError
    from runtime.providers.registry import ProviderSpec

# Operations (endpoints) a provider may support.
CHAT = "chat"
COMPLETIONS = "completions"
EMBEDDINGS = "embeddings"
MODERATIONS = "moderations"  # OpenAI's /v1/moderations: the openai kind (and the OpenAI-compatible family)
ALL_OPERATIONS = (CHAT, COMPLETIONS, EMBEDDINGS, MODERATIONS)


class Usage:
    """Token counts for one request; zeros when the provider reported none.

    `prompt_tokens` includes `cached_tokens` (read from the provider's prompt cache) and
    `cache_write_tokens` (written to it: Anthropic's and Bedrock's cache creation), as OpenAI's
    `prompt_tokens` does; the catalog prices each kind at its own rate (runtime/catalog)."""

    __slots__ = ("cache_write_tokens", "cached_tokens", "completion_tokens", "prompt_tokens", "total_tokens")

    def __init__(
        self,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        total_tokens: int | None = None,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.total_tokens = prompt_tokens + completion_tokens if total_tokens is None else total_tokens
        self.cached_tokens = cached_tokens
        self.cache_write_tokens = cache_write_tokens

    @classmethod
    def from_openai(cls, usage: Mapping[str, Any] | None) -> Usage | None:
        if not isinstance(usage, dict):
            return None
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens", 0) if isinstance(details, dict) else 0
        prompt = usage.get("prompt_tokens") or 0
        completion = usage.get("completion_tokens") or 0
        return cls(prompt, completion, usage.get("total_tokens"), cached or 0)

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens:
            out["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return out


class UpstreamRequest:
    """What to send upstream.

    Adapters fill `payload` (a JSON-able object); the core encodes it into `body` so the encode stage is
    timed on its own, then awaits the adapter's optional `sign(request, key, provider, session)` for
    schemes that sign the exact bytes (SigV4) or attach a token fetched (and cached) with `session`.
    """

    __slots__ = ("body", "headers", "method", "payload", "url")

    def __init__(
        self, method: str, url: str, headers: dict[str, str], payload: Any = None, body: bytes | None = None
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.payload = payload
        self.body = body


class ParsedResponse:
    """A successful non-streaming answer in OpenAI format.

    `raw` is the upstream body when it already is exactly what an OpenAI client should receive, so the
    OpenAI ingress can forward it without re-encoding; otherwise None and `data` is encoded.
    """

    __slots__ = ("data", "raw", "usage")

    def __init__(self, data: dict[str, Any], usage: Usage | None, raw: bytes | None = None) -> None:
        self.data = data
        self.usage = usage
        self.raw = raw


class StreamTranslator(Protocol):
    """State for one upstream stream: bytes in, OpenAI `chat.completion.chunk` dicts out."""

    usage: Usage | None
    # The upstream signalled a proper end of stream: its end marker, or (for formats whose providers
    # omit it) a clean end of body after every choice's finish reason; set by `close()` in that case.
    finished: bool

    def feed(self, data: bytes) -> list[dict[str, Any]]: ...

    def close(self) -> list[dict[str, Any]]:
        """Upstream EOF: flush what is left. Raises UpstreamGarbage for an unparseable tail."""
        ...


class RawStreamScanner(Protocol):
    """State for one upstream stream forwarded as bytes: finds whole events, drops none the client
    should see, reads only usage, the end marker and error events (providers/openai_passthrough.py)."""

    usage: Usage | None
    finished: bool
    source: bytes  # the whole events the last `feed` consumed, as received (for the request log)
    max_event: int  # bytes of one unfinished event it may hold (set to the upstream body cap)
    failed: GatewayError | None  # an error met after events `feed` returned: raise it once they are sent
    skipped: int  # malformed events dropped (the stream goes on)

    def feed(self, data: bytes) -> bytes:
        """The bytes to forward now (whole events). Raises GatewayError for an upstream error event."""
        ...

    def close(self) -> bytes:
        """Upstream EOF: a last event that lacked its blank line, or b""."""
        ...


# `sign(request, key, provider, session)`: awaited after the body is encoded, for schemes that sign the
# exact bytes (SigV4) or attach a token fetched (and cached) with the auxiliary `session`.
Signer = Callable[["UpstreamRequest", "KeyConfig", "ProviderConfig", "aiohttp.ClientSession | None"], Awaitable[None]]


class Adapter(Protocol):
    """Everything the core calls on an adapter (runtime/core/pipeline.py, router.py, runtime/http/)."""

    kind: str  # the registry's `kind` this adapter speaks; also decides pass-through of OpenAI fields
    operations: frozenset[str]  # endpoints accepted (CHAT, COMPLETIONS, EMBEDDINGS, COUNT_TOKENS, ...)
    local: bool  # answers in-process through respond / respond_stream; never builds an upstream request

    @property
    def sign(self) -> Signer | None:
        """None, or the coroutine function that signs or authorises a built request (see Signer)."""
        ...

    def build_request(
        self,
        provider: ProviderConfig,
        spec: ProviderSpec,
        op: str,
        body: dict[str, Any],
        model: str,
        key: KeyConfig,
        stream: bool,
    ) -> UpstreamRequest: ...

    def parse_response(self, op: str, model: str, raw: bytes) -> ParsedResponse: ...

    def stream_translator(self, op: str, model: str) -> StreamTranslator: ...

    def raw_stream(self, op: str, model: str, client_wants_usage: bool) -> RawStreamScanner | None:
        """For the streaming fast path (the client speaks this provider's stream format): a scanner whose
        `feed` returns the upstream bytes to forward as they are; None when the adapter has none."""
        ...

    def parse_error(self, status: int, headers: Mapping[str, str], raw: bytes) -> ProviderError: ...

    def list_models(self, provider: ProviderConfig) -> list[str]:
        """The models to list for this provider (empty: the router uses the registry's defaults)."""
        ...

    def respond(self, op: str, body: dict[str, Any], model: str) -> ParsedResponse:
        """A local adapter's whole answer (only called when `local`)."""
        ...

    def respond_stream(self, op: str, body: dict[str, Any], model: str) -> tuple[list[dict[str, Any]], Usage]:
        """A local adapter's answer as OpenAI stream chunks, with its usage (only called when `local`)."""
        ...


def configured_models(provider: ProviderConfig, deployments: Callable[[KeyConfig], Iterable[str]]) -> list[str]:
    """The provider's `models`, then each key's allow-list and deployment names, first occurrence kept."""
    models = list(provider.models)
    for key in provider.keys:
        models.extend(m for m in key.models if m not in models)
        models.extend(m for m in deployments(key) if m not in models)
    return models


class AdapterBase:
    """Defaults shared by the network adapters: not local, nothing to sign, configured models listed.

    Subclasses set `kind` and `operations` and implement the translation methods; an adapter whose keys
    map model names to deployments overrides `deployments`.
    """

    local = False
    sign: Signer | None = None

    def deployments(self, key: KeyConfig) -> Iterable[str]:
        """Model names a key serves through its own model -> deployment map (none by default)."""
        return ()

    def list_models(self, provider: ProviderConfig) -> list[str]:
        return configured_models(provider, self.deployments)

    def raw_stream(self, op: str, model: str, client_wants_usage: bool) -> RawStreamScanner | None:
        return None  # translating adapters relay parsed chunks

    def respond(self, op: str, body: dict[str, Any], model: str) -> ParsedResponse:
        raise NotImplementedError(f"{type(self).__name__} is not a local adapter")

    def respond_stream(self, op: str, body: dict[str, Any], model: str) -> tuple[list[dict[str, Any]], Usage]:
        raise NotImplementedError(f"{type(self).__name__} is not a local adapter")

"""The semantic_cache plugin's parts, in-process: settings and their errors with paths, the exact key,
the replay in every client format, the stream capture, TTL with an injected clock, coalescing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from runtime.cache.key import request_key
from runtime.cache.memory_store import MemoryCacheStore
from runtime.cache.plugin import SemanticCachePlugin
from runtime.cache.replay import StreamCapture, chunks, pieces, storable
from runtime.cache.settings import CacheSettings, SettingsError, parse_duration, parse_settings, request_options
from runtime.config.load import ConfigError, parse_document
from runtime.config.model import Tuning
from runtime.core.context import RequestContext
from runtime.errors import InvalidRequest
from runtime.http.anthropic import AnthropicIngress
from runtime.http.genai import GenAIIngress
from runtime.http.openai import OpenAIIngress
from runtime.http.responses import ResponsesIngress
from runtime.providers.base import ParsedResponse, Usage
from runtime.providers.mock import MockAdapter

PROVIDERS = frozenset({"openai", "anthropic", "mock"})


# -- settings ---------------------------------------------------------------------------------------------
def _doc(config: dict[str, Any]) -> dict[str, Any]:
    return {"plugins": [{"name": "logging"}, {"name": "semantic_cache", "config": config}]}


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"ttl": "5 minutes"}, "plugins[1].config.ttl"),
        ({"ttl": -1}, "plugins[1].config.ttl"),
        ({"threshold": 1.5}, "plugins[1].config.threshold"),
        ({"threshold": "high"}, "plugins[1].config.threshold"),
        ({"dimension": 0}, "plugins[1].config.dimension"),
        ({"dimension": 256}, "plugins[1].config.dimension"),
        ({"provider": "openai", "dimension": 1536}, "plugins[1].config.embedding_model"),
        ({"provider": "openai", "embedding_model": "e", "dimension": 1}, "plugins[1].config.dimension"),
        ({"embedding_model": "e"}, "plugins[1].config.embedding_model"),
        ({"scope": "team"}, "plugins[1].config.scope"),
        ({"ttl_seconds": 5}, "plugins[1].config.ttl_seconds"),
        ({"conversation_history_threshold": -1}, "plugins[1].config.conversation_history_threshold"),
        ({"cache_by_model": "yes"}, "plugins[1].config.cache_by_model"),
    ],
)
def test_settings_errors_name_the_path(config: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_document(_doc(config), {}, Tuning())
    assert info.value.path == path, info.value


def test_settings_go_example_loads_with_warnings() -> None:
    with open("/work/shared/reference/bifrost-go/examples/withsemanticcache.json") as f:
        raw = json.load(f)
    _providers, _client, warnings = parse_document(raw, {}, Tuning())
    assert any(w.startswith("vector_store") for w in warnings)
    settings = parse_settings(raw["plugins"][0]["config"])
    assert settings.ttl_s == 300 and settings.threshold == 0.8 and not settings.semantic


def test_settings_defaults_and_go_names() -> None:
    s = parse_settings(
        {"provider": "openai", "embedding_model": "text-embedding-3-small", "dimension": 1536, "ttl": "1h30m"}
    )
    assert s.semantic and s.ttl_s == 5400 and s.threshold == 0.8
    assert (s.conversation_history_threshold, s.cache_by_model, s.cache_by_provider) == (3, True, True)
    assert (s.exclude_system_prompt, s.coalesce, s.scope, s.max_entries) == (False, True, "virtual_key", 10000)
    config = s.to_config()
    assert config["ttl"] == "1h30m" and config["embedding_model"] == "text-embedding-3-small"
    assert parse_settings(config) == s  # to_config round-trips


def test_settings_warn_on_keys_and_namespace() -> None:
    _p, _c, warnings = parse_document(_doc({"keys": ["sk-x"], "vector_store_namespace": "ns"}), {}, Tuning())
    assert "plugins[1].config.keys: ignored; embeddings use the gateway's own keys for the provider" in warnings
    assert any(w.startswith("plugins[1].config.vector_store_namespace") for w in warnings)
    assert not any("sk-x" in w for w in warnings)


def test_parse_duration() -> None:
    assert parse_duration(90) == 90 and parse_duration("90") == 90 and parse_duration("1m30s") == 90
    assert parse_duration("500ms") == 0.5 and parse_duration("2h") == 7200
    for bad in ("", "5x", "m", -1, True, None, "1e9h"):
        assert parse_duration(bad) is None, bad
    with pytest.raises(SettingsError):
        parse_settings({"ttl": 0})


def test_request_headers() -> None:
    s = parse_settings({"threshold": 0.8})
    assert request_options({}, s) is None  # no cache key: not consulted
    o = request_options({"x-bf-cache-key": "a", "x-bf-cache-ttl": "10s", "x-bf-cache-threshold": "0.95"}, s)
    assert o is not None and (o.cache_key, o.ttl_s, o.threshold, o.store) == ("a", 10, 0.95, True)
    lower = request_options({"x-bf-cache-key": "a", "x-bf-cache-threshold": "0.5"}, s)
    assert lower is not None and lower.threshold == 0.8  # a request may only raise it
    no_store = request_options({"x-bf-cache-key": "a", "x-bf-cache-no-store": "1"}, s)
    assert no_store is not None and not no_store.store
    defaulted = request_options({}, parse_settings({"default_cache_key": "app"}))
    assert defaulted is not None and defaulted.cache_key == "app"
    for name, value in (
        ("x-bf-cache-ttl", "soon"),
        ("x-bf-cache-threshold", "nan"),
        ("x-bf-cache-threshold", "2"),
        ("x-bf-cache-type", "fuzzy"),
        ("x-bf-cache-no-store", "maybe"),
        ("x-bf-cache-key", " "),
    ):
        with pytest.raises(InvalidRequest):
            request_options({"x-bf-cache-key": "a", name: value}, s)


# -- the key --------------------------------------------------------------------------------------------------
BODY = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.2}


def _key(body: dict[str, Any], ns: tuple[str | None, str] = (None, "k"), **kw: Any) -> Any:
    options = {"by_model": True, "by_provider": True, "exclude_system": False, **kw}
    return request_key("chat", body, namespace=ns, providers=PROVIDERS, **options)


def test_key_ignores_delivery_fields() -> None:
    same = {**BODY, "stream": True, "stream_options": {"include_usage": True}, "user": "u1", "metadata": {"a": 1}}
    assert _key(same).request_hash == _key(BODY).request_hash
    assert _key({**BODY, "fallbacks": ["anthropic/claude"]}).request_hash == _key(BODY).request_hash


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.3},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"model": "openai/gpt-4o"},
        {"model": "anthropic/gpt-4o-mini"},
        {"messages": [{"role": "user", "content": "Hi!"}]},
        {"response_format": {"type": "json_object"}},
        {"max_tokens": 5},
    ],
)
def test_key_counts_what_changes_the_answer(change: dict[str, Any]) -> None:
    assert _key({**BODY, **change}).request_hash != _key(BODY).request_hash


def test_key_namespace_and_switches() -> None:
    assert _key(BODY, ("vk-1", "k")).request_hash != _key(BODY, ("vk-2", "k")).request_hash
    assert _key(BODY, (None, "a")).request_hash != _key(BODY, (None, "b")).request_hash
    other_model = {**BODY, "model": "openai/gpt-4o"}
    assert _key(other_model, by_model=False).request_hash == _key(BODY, by_model=False).request_hash
    other_provider = {**BODY, "model": "anthropic/gpt-4o-mini"}
    assert _key(other_provider, by_provider=False).request_hash == _key(BODY, by_provider=False).request_hash
    with_system = {**BODY, "messages": [{"role": "system", "content": "Be brief"}, *BODY["messages"]]}
    assert _key(with_system, exclude_system=True).request_hash == _key(BODY, exclude_system=True).request_hash
    assert _key(with_system).request_hash != _key(BODY).request_hash


def test_params_hash_and_semantic_text() -> None:
    reworded = {**BODY, "messages": [{"role": "user", "content": "Hello"}]}
    assert _key(reworded).params_hash == _key(BODY).params_hash
    assert _key({**BODY, "temperature": 1.0}).params_hash != _key(BODY).params_hash
    assert _key(BODY).semantic_text == "user: Hi"
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with_image = {**BODY, "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}, image]}]}
    assert _key(with_image).semantic_text is None  # exact matching only


# -- replay -----------------------------------------------------------------------------------------------------
ANSWER: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": " ".join(f"word{i}" for i in range(40)),
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 40, "total_tokens": 43},
}


def test_pieces_rejoin() -> None:
    text = ANSWER["choices"][0]["message"]["content"]
    parts = pieces(text)
    assert len(parts) > 2 and "".join(parts) == text and all(len(p) <= 80 for p in parts)


def test_replay_chunks_fold_back_to_the_answer() -> None:
    replayed = chunks(ANSWER)
    assert replayed[0]["choices"][0]["delta"]["role"] == "assistant"
    assert replayed[-1]["usage"] == ANSWER["usage"] and replayed[-1]["choices"] == []
    capture = StreamCapture("chat")
    for chunk in replayed:
        capture.observe(None, chunk)
    folded = capture.answer()
    assert folded is not None
    assert folded["choices"][0]["message"]["content"] == ANSWER["choices"][0]["message"]["content"]
    assert folded["choices"][0]["message"]["tool_calls"] == ANSWER["choices"][0]["message"]["tool_calls"]
    assert folded["choices"][0]["finish_reason"] == "tool_calls" and folded["usage"] == ANSWER["usage"]


def test_capture_of_an_unfinished_stream_is_nothing() -> None:
    capture = StreamCapture("chat")
    for chunk in chunks(ANSWER)[:3]:  # cut before the finish reason
        capture.observe(None, chunk)
    assert capture.answer() is None
    refused = json.loads(json.dumps(ANSWER))
    refused["choices"][0]["finish_reason"] = "content_filter"
    assert not storable(refused) and storable(ANSWER)


@pytest.mark.parametrize(
    "ingress", [OpenAIIngress("chat"), AnthropicIngress(), GenAIIngress("streamGenerateContent"), ResponsesIngress()]
)
def test_replay_renders_in_every_client_format(ingress: Any) -> None:
    ctx = RequestContext("r1", "chat", ingress.name)
    ctx.model_requested = "gpt-4o-mini"
    ctx.body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    encoder = ingress.encoder(ctx)
    replayed = chunks(ANSWER)
    out = b"".join(encoder.encode(c) for c in replayed) + encoder.end(Usage(3, 40), "chatcmpl-1")
    text = out.decode()
    assert "word39" in text and "word0" in text  # all the content
    assert '"a\\":1' in text or '"a":1' in text or '\\"a\\"' in text  # the tool call's arguments
    whole = ingress.respond(ParsedResponse(json.loads(json.dumps(ANSWER)), Usage(3, 40)), ctx)
    assert b"word39" in whole


def test_replay_of_a_text_completion() -> None:
    stored = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "text": "hello there", "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    replayed = chunks(stored)
    assert all(c["object"] == "text_completion" for c in replayed)
    capture = StreamCapture("completions")
    for chunk in replayed:
        capture.observe(None, chunk)
    folded = capture.answer()
    assert folded is not None and folded["choices"][0]["text"] == "hello there"
    assert folded["choices"][0]["finish_reason"] == "length"


# -- the plugin, in-process ---------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _plugin(clock: Clock, **config: Any) -> SemanticCachePlugin:
    settings = parse_settings({"ttl": 60, **config})
    store = MemoryCacheStore(max_entries=100, max_bytes=1 << 20)
    return SemanticCachePlugin(settings, store, providers=PROVIDERS, clock=clock, wait_s=5)


def _ctx(rid: str, *, stream: bool = False, headers: dict[str, str] | None = None) -> RequestContext:
    ctx = RequestContext(rid, "chat")
    ctx.headers = {"x-bf-cache-key": "k", **(headers or {})}
    ctx.body = {"model": "mock/mock-chat", "messages": [{"role": "user", "content": "Hi"}]}
    ctx.stream = stream
    return ctx


def _answer(ctx: RequestContext) -> ParsedResponse:
    data = MockAdapter().respond("chat", ctx.body, "mock-chat")
    return data


async def _miss(plugin: SemanticCachePlugin, ctx: RequestContext, status: int = 200) -> None:
    assert await plugin.pre_hook(ctx) is None
    assert ctx.cache == "miss" and ctx.response_headers == {"x-bf-cache": "miss"}
    ctx.provider, ctx.model, ctx.status = "mock", "mock-chat", status
    ctx.cost = 0.001
    await plugin.post_hook(ctx, _answer(ctx) if status == 200 else None)
    plugin.on_finish(ctx)


async def test_plugin_hit_then_ttl_expiry() -> None:
    clock = Clock()
    plugin = _plugin(clock)
    await _miss(plugin, _ctx("a"))
    assert plugin.counters.stored == 1
    hit = _ctx("b")
    answer = await plugin.pre_hook(hit)
    assert isinstance(answer, ParsedResponse) and "You said: Hi" in answer.data["choices"][0]["message"]["content"]
    assert hit.cache == "hit-direct" and hit.cost == 0.0 and (hit.provider, hit.model) == ("mock", "mock-chat")
    assert hit.response_headers == {"x-bf-cache": "hit-direct", "x-bf-cache-id": "a"}
    assert plugin.counters.hits["direct"] == 1 and plugin.counters.saved_cost == pytest.approx(0.001)
    clock.now += 61  # past the ttl
    await _miss(plugin, _ctx("c"))
    # a per-request ttl
    clock.now += 1
    short = _ctx("d", headers={"x-bf-cache-key": "short", "x-bf-cache-ttl": "5s"})
    await _miss(plugin, short)
    clock.now += 6
    assert await plugin.pre_hook(_ctx("e", headers={"x-bf-cache-key": "short"})) is None


async def test_plugin_streamed_hit_and_errors_not_stored() -> None:
    plugin = _plugin(Clock())
    await _miss(plugin, _ctx("a"), status=502)
    assert plugin.counters.stored == 0
    await _miss(plugin, _ctx("b", headers={"x-bf-cache-no-store": "true"}))
    assert plugin.counters.stored == 0
    await _miss(plugin, _ctx("c"))
    stream = await plugin.pre_hook(_ctx("d", stream=True))
    assert isinstance(stream, AsyncIterator)
    replayed = [c async for c in stream]
    assert replayed[-2]["choices"][0]["finish_reason"] == "stop" and "usage" in replayed[-1]


async def test_plugin_stores_a_streamed_miss_only_when_complete() -> None:
    plugin = _plugin(Clock())
    answer = _answer(_ctx("x")).data
    cut = _ctx("a", stream=True)
    assert await plugin.pre_hook(cut) is None and cut.observers
    for chunk in chunks(answer)[:2]:
        for observe in cut.observers:
            observe(cut, chunk)
    cut.status, cut.provider, cut.model = 200, "mock", "mock-chat"
    await plugin.post_hook(cut, None)  # 200 headers went out, but no finish reason: a cut stream
    plugin.on_finish(cut)
    assert plugin.counters.stored == 0
    whole = _ctx("b", stream=True)
    assert await plugin.pre_hook(whole) is None and whole.observers
    for chunk in chunks(answer):
        for observe in whole.observers:
            observe(whole, chunk)
    whole.status, whole.provider, whole.model = 200, "mock", "mock-chat"
    await plugin.post_hook(whole, None)
    plugin.on_finish(whole)
    assert plugin.counters.stored == 1
    hit = await plugin.pre_hook(_ctx("c"))  # stored from a stream, answered whole
    assert isinstance(hit, ParsedResponse)
    assert hit.data["choices"][0]["message"]["content"] == answer["choices"][0]["message"]["content"]


async def test_plugin_bypasses_long_conversations_and_other_endpoints() -> None:
    plugin = _plugin(Clock())
    ctx = _ctx("a")
    ctx.body["messages"] = [{"role": "user", "content": str(i)} for i in range(4)]
    assert await plugin.pre_hook(ctx) is None and ctx.cache is None
    other = RequestContext("b", "images")
    other.headers = {"x-bf-cache-key": "k"}
    assert await plugin.pre_hook(other) is None and other.cache is None
    assert plugin.counters.requests == 0


async def test_coalescing_followers_share_the_leader_and_go_upstream_when_it_fails() -> None:
    plugin = _plugin(Clock())
    leader = _ctx("lead")
    assert await plugin.pre_hook(leader) is None
    followers = [asyncio.create_task(plugin.pre_hook(_ctx(f"f{i}"))) for i in range(5)]
    streamer_ctx = _ctx("s", stream=True)
    streamer = asyncio.create_task(plugin.pre_hook(streamer_ctx))
    await asyncio.sleep(0.01)
    assert not any(f.done() for f in followers)
    leader.status, leader.provider, leader.model = 200, "mock", "mock-chat"
    await plugin.post_hook(leader, _answer(leader))
    plugin.on_finish(leader)
    answers = await asyncio.gather(*followers)
    assert all(isinstance(a, ParsedResponse) for a in answers)
    assert streamer_ctx.response_headers == {"x-bf-cache": "hit-direct", "x-bf-cache-id": "lead"}
    replay = await streamer
    assert [c async for c in replay][-1]["usage"]
    assert plugin.counters.coalesced == 6
    # a failing leader: its followers go upstream themselves (None)
    leader2 = _ctx("lead2", headers={"x-bf-cache-key": "other"})
    assert await plugin.pre_hook(leader2) is None
    follower = asyncio.create_task(plugin.pre_hook(_ctx("f", headers={"x-bf-cache-key": "other"})))
    await asyncio.sleep(0.01)
    leader2.status = 502
    await plugin.post_hook(leader2, None)
    plugin.on_finish(leader2)
    assert await follower is None


async def test_streaming_follower_receives_the_leaders_chunks_live() -> None:
    plugin = _plugin(Clock())
    answer = _answer(_ctx("x")).data
    leader = _ctx("lead", stream=True)
    assert await plugin.pre_hook(leader) is None and leader.observers
    replayed = chunks(answer)
    for observe in leader.observers:
        observe(leader, replayed[0])
    follower = await plugin.pre_hook(_ctx("f", stream=True))
    assert follower is not None
    received: list[dict[str, Any]] = []

    async def read() -> None:
        async for chunk in follower:
            received.append(chunk)

    reader = asyncio.create_task(read())
    for chunk in replayed[1:]:
        for observe in leader.observers:
            observe(leader, chunk)
        await asyncio.sleep(0)
    leader.status, leader.provider, leader.model = 200, "mock", "mock-chat"
    await plugin.post_hook(leader, None)
    plugin.on_finish(leader)
    await reader
    assert received == replayed


def test_cache_settings_is_frozen() -> None:
    with pytest.raises(AttributeError):
        CacheSettings().ttl_s = 1  # type: ignore[misc]


async def test_an_embedding_failure_makes_the_request_exact_only() -> None:
    clock = Clock()
    plugin = _plugin(clock, provider="mock", embedding_model="mock-embed-semantic", dimension=256)
    assert plugin.embedder is not None and plugin.embedder.gateway is None  # unbound: every embedding fails
    await _miss(plugin, _ctx("a"))
    await _miss(plugin, _ctx("b", headers={"x-bf-cache-key": "other"}))
    assert plugin.counters.embedding_errors == 2 and plugin.counters.misses["semantic"] == 2
    hit = _ctx("c")
    assert isinstance(await plugin.pre_hook(hit), ParsedResponse)  # the exact lookup still serves
    assert hit.cache == "hit-direct"
    direct_only = _ctx("d", headers={"x-bf-cache-key": "third", "x-bf-cache-type": "direct"})
    await _miss(plugin, direct_only)
    assert plugin.counters.embedding_errors == 2  # no embedding asked for a direct-only request


async def test_semantic_lookup_in_process() -> None:
    """Semantic mode with an embedder answering the mock's semantic vectors (no gateway needed)."""
    from runtime.providers import mock

    plugin = _plugin(Clock(), provider="mock", embedding_model="mock-embed-semantic", dimension=64, threshold=0.5)
    assert plugin.embedder is not None

    async def embed(text: str) -> list[float]:
        return mock._semantic_embedding(text, 64)

    plugin.embedder.embed = embed  # type: ignore[method-assign]
    first = _ctx("a")
    first.body["messages"] = [{"role": "user", "content": "how tall is the eiffel tower"}]
    await _miss(plugin, first)
    similar = _ctx("b")
    similar.body["messages"] = [{"role": "user", "content": "how tall is the eiffel tower in meters"}]
    answer = await plugin.pre_hook(similar)
    assert isinstance(answer, ParsedResponse) and similar.cache == "hit-semantic"
    assert similar.cache_similarity is not None and 0.5 <= similar.cache_similarity < 1
    assert similar.response_headers is not None and float(similar.response_headers["x-bf-cache-similarity"]) > 0.5
    raised = _ctx("c", headers={"x-bf-cache-threshold": "0.99"})
    raised.body["messages"] = similar.body["messages"]
    await _miss(plugin, raised)


class BrokenStore(MemoryCacheStore):
    async def get(self, request_hash: str, now: float) -> Any:
        raise OSError("disk I/O error")


async def test_a_failing_store_serves_uncached(caplog: pytest.LogCaptureFixture) -> None:
    plugin = SemanticCachePlugin(
        parse_settings({}), BrokenStore(max_entries=10, max_bytes=1 << 20), providers=PROVIDERS
    )
    ctx = _ctx("a")
    assert await plugin.pre_hook(ctx) is None and ctx.cache is None
    assert await plugin.pre_hook(_ctx("b")) is None
    assert len([r for r in caplog.records if "served without the cache" in r.getMessage()]) == 1  # once a minute


@pytest.mark.parametrize("cleanup", [True, False])
async def test_cleanup_on_shutdown(cleanup: bool) -> None:
    plugin = _plugin(Clock(), cleanup_on_shutdown=cleanup)
    await _miss(plugin, _ctx("a"))
    await plugin.aclose()
    assert plugin.store.stats().entries == (0 if cleanup else 1)

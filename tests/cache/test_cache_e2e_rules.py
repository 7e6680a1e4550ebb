"""Response caching end to end: what is shared and what never is (issue 12 Tests), against real gateway
processes, the official OpenAI SDK as the client and the fake OpenAI counting upstream calls.

- no hit across virtual keys (governance with two keys) unless `scope: global`; none across parameters
  that change the answer; hits across those that do not (`user`, the stream flag);
- only complete successes stored: upstream errors, refusals, streams cut by the provider or by the
  client never are;
- 50 concurrent identical requests make exactly one upstream call (and so do 20 identical streams);
- Go Bifrost's examples/withsemanticcache.json loads and caches, with x-bf-cache-key;
- x-bf-cache-no-store, x-bf-cache-type and x-bf-cache-ttl are honoured; the log row says what happened;
- the embedded store survives a gateway restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from fakes import FakeOpenAI
from fakes.reply import Reply
from harness import Gateway, StartGateway, make_config, openai_provider

MODEL = "openai/gpt-4o-mini"
MESSAGES: Any = [{"role": "user", "content": "Name three prime numbers."}]
KEY = {"x-bf-cache-key": "rules"}
GO_EXAMPLE = Path("/work/shared/reference/bifrost-go/examples/withsemanticcache.json")
VK_A, VK_B = "sk-bf-e2e-cache-a-0001", "sk-bf-e2e-cache-b-0002"


def config(fake: FakeOpenAI, cache: dict[str, Any] | None = None, **client: Any) -> dict[str, Any]:
    doc = make_config({"openai": openai_provider(fake.url), "mock": {}}, **client)
    settings = {"dimension": 1, "ttl": "5m", **(cache or {})}
    doc["plugins"] = [{"name": "semantic_cache", "enabled": True, "config": settings}]
    return doc


def calls(fake: FakeOpenAI) -> int:
    return len(fake.requests_to("/chat/completions"))


def ask(gw: Gateway, headers: dict[str, str] | None = None, api_key: str | None = None, **params: Any) -> Any:
    """One non-streaming chat request; the raw response (headers) with the parsed answer at `.parse()`."""
    extra = {"api_key": api_key} if api_key else {}
    with gw.client(default_headers={**KEY, **(headers or {})}, **extra) as client:
        return client.chat.completions.with_raw_response.create(
            model=params.pop("model", MODEL), messages=params.pop("messages", MESSAGES), **params
        )


def verdict(gw: Gateway, **kw: Any) -> str:
    return str(ask(gw, **kw).headers.get("x-bf-cache"))


# -- scoping -------------------------------------------------------------------------------------------------
def governed(fake: FakeOpenAI, scope: str | None = None) -> dict[str, Any]:
    doc = config(fake, {"scope": scope} if scope else None, enforce_auth_on_inference=True)
    doc["governance"] = {
        "virtual_keys": [
            {"id": "vk-a", "name": "team a", "value": VK_A},
            {"id": "vk-b", "name": "team b", "value": VK_B},
        ]
    }
    return doc


def test_entries_never_cross_virtual_keys(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(governed(fake_openai))
    assert verdict(gw, api_key=VK_A) == "miss"
    assert verdict(gw, api_key=VK_A) == "hit-direct"
    assert verdict(gw, api_key=VK_B) == "miss"  # same prompt, same cache key, another key: its own entry
    assert verdict(gw, api_key=VK_B) == "hit-direct"
    assert calls(fake_openai) == 2
    stored = json.dumps([rec.raw.decode("utf-8", "replace") for rec in fake_openai.requests])
    assert "sk-bf-" not in stored  # neither key reached the provider


def test_scope_global_shares_entries_across_virtual_keys(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(governed(fake_openai, scope="global"))
    assert verdict(gw, api_key=VK_A) == "miss"
    assert verdict(gw, api_key=VK_B) == "hit-direct"
    assert calls(fake_openai) == 1


def test_parameters_that_change_the_answer_are_other_entries(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gw = start_gateway(config(fake_openai))
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    assert verdict(gw) == "miss"
    others: list[dict[str, Any]] = [
        {"temperature": 0.2},
        {"max_tokens": 7},
        {"top_p": 0.5},
        {"tools": [tool]},
        {"response_format": {"type": "json_object"}},
        {"model": "openai/gpt-4o"},
        {"messages": [{"role": "system", "content": "Be brief."}, *MESSAGES]},
        {"headers": {"x-bf-cache-key": "another-key"}},
    ]
    for params in others:
        assert verdict(gw, **params) == "miss", params
    assert calls(fake_openai) == 1 + len(others)
    # What only changes who asks or how the answer is delivered shares the entry.
    assert verdict(gw, user="someone-else") == "hit-direct"
    assert verdict(gw, metadata={"trace": "x"}) == "hit-direct"
    assert calls(fake_openai) == 1 + len(others)


def test_requests_without_a_cache_key_bypass_the_cache(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(config(fake_openai))
    with gw.client() as client:
        for _ in range(2):
            raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
            assert "x-bf-cache" not in raw.headers
    assert calls(fake_openai) == 2


def test_semantic_hits_need_the_same_parameters(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    semantic = {"provider": "mock", "embedding_model": "mock-embed-semantic", "dimension": 256}
    gw = start_gateway(config(fake_openai, semantic))
    reworded: Any = [{"role": "user", "content": "Name three prime numbers, please."}]
    unrelated: Any = [{"role": "user", "content": "How tall is the Eiffel tower?"}]
    assert verdict(gw) == "miss"
    assert verdict(gw, messages=reworded, temperature=0.3) == "miss"  # similar prompt, other parameters
    assert verdict(gw, messages=unrelated) == "miss"  # same parameters, a prompt unlike any stored
    similar = ask(gw, messages=reworded)
    assert similar.headers["x-bf-cache"] == "hit-semantic"
    assert 0.8 <= float(similar.headers["x-bf-cache-similarity"]) < 1.0
    assert similar.parse().choices[0].message.content.endswith("Name three prime numbers.")  # the stored answer
    assert calls(fake_openai) == 3


# -- only complete successes stored ----------------------------------------------------------------------------
def test_errors_and_refusals_are_never_stored(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(config(fake_openai))
    fake_openai.enqueue(Reply.server_error())
    with pytest.raises(openai.InternalServerError):
        ask(gw)
    refusal = {
        "id": "chatcmpl-refused",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "content_filter"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3},
    }
    fake_openai.enqueue(Reply(json=refusal))
    assert ask(gw).parse().choices[0].finish_reason == "content_filter"
    assert verdict(gw) == "miss"  # neither the error nor the refusal was stored
    assert verdict(gw) == "hit-direct"
    assert calls(fake_openai) == 3


def _stream_text(gw: Gateway) -> str:
    with gw.client(default_headers=KEY) as client:
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_streams_cut_by_the_provider_or_the_client_are_never_stored(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gw = start_gateway(config(fake_openai))
    # The provider cuts the stream after two events: the client gets an error or a short stream.
    fake_openai.enqueue(Reply(cut_after=2))
    with contextlib.suppress(Exception):  # how the SDK reports the cut (error event, protocol error) varies
        _stream_text(gw)
    # The client goes away after the first chunk of a slow stream.
    fake_openai.enqueue(Reply(chunk_delay=0.2))
    with gw.client(default_headers=KEY) as client:
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        next(iter(stream))
        stream.close()
    assert _wait_calls(fake_openai, 2)
    # Neither was stored: the next stream goes upstream, completes, and is stored.
    full = _stream_text(gw)
    assert full.startswith("fake-openai:") and calls(fake_openai) == 3
    assert verdict(gw) == "hit-direct" and _stream_text(gw) == full
    assert calls(fake_openai) == 3


def _wait_calls(fake: FakeOpenAI, n: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while calls(fake) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return calls(fake) >= n


# -- coalescing -------------------------------------------------------------------------------------------------
def test_fifty_concurrent_identical_requests_make_one_upstream_call(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gw = start_gateway(config(fake_openai))
    fake_openai.always(Reply(delay=0.5))  # the leader is still in flight when the others arrive

    async def burst() -> list[str]:
        async with gw.async_client(default_headers=KEY) as client:
            answers = await asyncio.gather(
                *(client.chat.completions.create(model=MODEL, messages=MESSAGES) for _ in range(50))
            )
        return [a.choices[0].message.content or "" for a in answers]

    texts = asyncio.run(burst())
    assert calls(fake_openai) == 1
    assert len(texts) == 50 and len(set(texts)) == 1 and texts[0].startswith("fake-openai:")


def test_concurrent_identical_streams_make_one_upstream_call(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gw = start_gateway(config(fake_openai))
    fake_openai.always(Reply(chunk_delay=0.05))  # followers join while the leader's chunks are flowing

    async def burst() -> list[str]:
        async with gw.async_client(default_headers=KEY) as client:

            async def one() -> str:
                stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
                return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

            return await asyncio.gather(*(one() for _ in range(20)))

    texts = asyncio.run(burst())
    assert calls(fake_openai) == 1
    assert len(set(texts)) == 1 and texts[0].startswith("fake-openai:")


def test_when_the_leader_fails_its_followers_are_answered_and_nothing_is_stored(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gw = start_gateway(config(fake_openai))
    fake_openai.enqueue(Reply.server_error(delay=0.5))  # the first (the leader) fails, late
    fake_openai.always(Reply(delay=0.2))

    async def burst() -> list[Any]:
        async with gw.async_client(default_headers=KEY) as client:
            first = asyncio.ensure_future(client.chat.completions.create(model=MODEL, messages=MESSAGES))
            await asyncio.sleep(0.1)  # the leader is in flight: the others follow it
            rest = [client.chat.completions.create(model=MODEL, messages=MESSAGES) for _ in range(9)]
            return await asyncio.gather(first, *rest, return_exceptions=True)

    results = asyncio.run(burst())
    assert isinstance(results[0], openai.InternalServerError)  # the leader's own error, in OpenAI's shape
    followers = results[1:]
    assert all(not isinstance(r, BaseException) for r in followers), followers
    assert {r.choices[0].message.content for r in followers} == {"fake-openai: Name three prime numbers."}
    assert calls(fake_openai) >= 2  # the followers went upstream themselves
    before = calls(fake_openai)
    assert verdict(gw) == "hit-direct"  # a follower's success was stored, the leader's error never
    assert calls(fake_openai) == before


def test_a_cut_leader_stream_is_not_stored_for_anyone(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(config(fake_openai))
    fake_openai.enqueue(Reply(chunk_delay=0.1, cut_after=3))  # the leader's stream is cut mid-way

    async def burst() -> list[Any]:
        async with gw.async_client(default_headers=KEY) as client:

            async def one() -> str:
                stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
                return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

            first = asyncio.ensure_future(one())
            await asyncio.sleep(0.15)  # joined while the leader streams
            return await asyncio.gather(first, *(one() for _ in range(4)), return_exceptions=True)

    whole = "fake-openai: Name three prime numbers."
    results = asyncio.run(burst())
    # Each stream ended in an error (the cut, passed on to followers already answering) or is whole (a
    # follower that went upstream itself): a cut never passes for a complete answer.
    assert isinstance(results[0], Exception), results[0]
    assert all(isinstance(r, Exception) or r == whole for r in results), results
    # And the cut answer was never stored: whatever answers next is whole.
    assert _stream_text(gw) == whole
    assert ask(gw).parse().choices[0].message.content == whole


# -- Go's example config ------------------------------------------------------------------------------------------
def test_go_example_config_loads_and_caches_with_a_cache_key(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    doc = json.loads(GO_EXAMPLE.read_text())
    assert doc["plugins"][0]["name"] == "semantic_cache" and "vector_store" in doc
    # The example names no provider: add ours, keep everything of Go's (the Weaviate vector_store included).
    doc.update(make_config({"openai": openai_provider(fake_openai.url)}))
    gw = start_gateway(doc)
    assert "vector_store" in gw.output()  # a Go setting we do not use: said, not refused
    assert verdict(gw) == "miss"
    assert verdict(gw) == "hit-direct"
    assert calls(fake_openai) == 1
    with gw.client() as client:  # no x-bf-cache-key and no default_cache_key: Go's rule, no caching
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert calls(fake_openai) == 2


# -- per-request headers -----------------------------------------------------------------------------------------
def test_no_store_header_and_the_log_row(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(config(fake_openai))
    assert verdict(gw, headers={"x-bf-cache-no-store": "true"}) == "miss"
    first = ask(gw)
    assert first.headers["x-bf-cache"] == "miss"  # the no-store answer was not kept
    hit = ask(gw, headers={"x-bf-cache-no-store": "1"})  # no-store still reads
    assert hit.headers["x-bf-cache"] == "hit-direct"
    assert hit.headers["x-bf-cache-id"] == first.headers["x-request-id"]
    assert calls(fake_openai) == 2
    assert gw.log.row_for(hit.headers["x-request-id"])["cache"] == "hit-direct"
    assert gw.log.row_for(first.headers["x-request-id"])["cache"] == "miss"


def test_ttl_header_expires_the_entry(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(config(fake_openai))
    assert verdict(gw, headers={"x-bf-cache-ttl": "1s"}) == "miss"
    assert verdict(gw) == "hit-direct"
    time.sleep(1.2)
    assert verdict(gw) == "miss"  # expired; stored again with the configured 5 minutes
    assert verdict(gw) == "hit-direct"
    assert calls(fake_openai) == 2


def test_cache_type_header_picks_the_lookup(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    semantic = {"provider": "mock", "embedding_model": "mock-embed-semantic", "dimension": 256}
    gw = start_gateway(config(fake_openai, semantic))
    reworded: Any = [{"role": "user", "content": "Name three prime numbers, please."}]
    assert verdict(gw) == "miss"
    # direct only: the reworded prompt is not looked up by similarity
    assert verdict(gw, messages=reworded, headers={"x-bf-cache-type": "direct"}) == "miss"
    # semantic only: even the identical prompt is found by similarity (1.0), not by its hash
    same = ask(gw, headers={"x-bf-cache-type": "semantic"})
    assert same.headers["x-bf-cache"] == "hit-semantic"
    assert float(same.headers["x-bf-cache-similarity"]) == pytest.approx(1.0, abs=1e-3)
    assert calls(fake_openai) == 2


def test_threshold_header_may_only_raise_the_configured_threshold(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    semantic = {"provider": "mock", "embedding_model": "mock-embed-semantic", "dimension": 256, "threshold": 0.8}
    gw = start_gateway(config(fake_openai, semantic))
    close: Any = [{"role": "user", "content": "Name three prime numbers, please."}]  # similarity ~0.88
    far: Any = [{"role": "user", "content": "Could you name three prime numbers for me?"}]  # ~0.59
    assert verdict(gw) == "miss"
    assert verdict(gw, messages=close, headers={"x-bf-cache-threshold": "0.99", "x-bf-cache-no-store": "1"}) == "miss"
    assert verdict(gw, messages=close, headers={"x-bf-cache-no-store": "1"}) == "hit-semantic"
    # Asking for a lower threshold than configured does not lower it (as in Go).
    assert verdict(gw, messages=far, headers={"x-bf-cache-threshold": "0.1"}) == "miss"
    assert calls(fake_openai) == 3


# -- the embedded store across a restart ------------------------------------------------------------------------------
def test_the_store_survives_a_gateway_restart(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    app_dir = tmp_path / "kept"
    gw = start_gateway(config(fake_openai), app_dir=app_dir)
    first = ask(gw)
    assert first.headers["x-bf-cache"] == "miss"
    assert gw.stop() == 0  # SIGTERM: pending writes flushed
    again = start_gateway(config(fake_openai), app_dir=app_dir)
    hit = ask(again)
    assert hit.headers["x-bf-cache"] == "hit-direct"
    assert hit.headers["x-bf-cache-id"] == first.headers["x-request-id"]
    assert hit.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert calls(fake_openai) == 1

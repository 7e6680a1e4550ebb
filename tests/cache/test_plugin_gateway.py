"""The semantic_cache plugin in a real gateway process, through the official SDKs, against the fake
OpenAI (which counts the upstream calls) and the built-in mock provider."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pytest
from fakes import FakeOpenAI
from fakes.reply import Reply
from harness import StartGateway, make_config, openai_provider

MESSAGES: Any = [{"role": "user", "content": "What is the capital of France?"}]
KEY = {"x-bf-cache-key": "tests"}


def cache_config(fake_url: str, cache: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    config = make_config({"openai": openai_provider(fake_url)})
    config["plugins"] = [{"name": "semantic_cache", "config": {"dimension": 1, "ttl": "5m", **(cache or {})}}]
    config.update(extra)
    return config


class Answer:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status_code = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def post(url: str, body: Any, headers: dict[str, str] | None = None) -> Answer:
    """A raw POST (the SDKs hide malformed-header answers behind their own exceptions)."""
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"content-type": "application/json", **(headers or {})}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return Answer(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return Answer(err.code, err.headers, err.read())


def chat_calls(fake: FakeOpenAI) -> int:
    return len(fake.requests_to("/chat/completions"))


def test_exact_hit_whole_and_streamed(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(cache_config(fake_openai.url))
    with gw.client(default_headers=KEY) as client:
        first = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MESSAGES)
        assert first.headers["x-bf-cache"] == "miss"
        second = client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=MESSAGES, user="someone-else"
        )
        assert second.headers["x-bf-cache"] == "hit-direct"
        assert second.headers["x-bf-cache-id"] == first.headers["x-request-id"]
        assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
        # stored whole, answered as a stream (usage only when asked, as OpenAI does)
        stream = client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        events = list(stream)
        text = "".join(e.choices[0].delta.content or "" for e in events if e.choices)
        assert text == first.parse().choices[0].message.content
        assert events[-1].usage is not None and events[-1].usage.total_tokens > 0
        # a different parameter is another entry
        other = client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=MESSAGES, temperature=0.1
        )
        assert other.headers["x-bf-cache"] == "miss"
        # without a cache key the cache is not consulted
    with gw.client() as plain:
        bare = plain.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MESSAGES)
        assert "x-bf-cache" not in bare.headers
    assert chat_calls(fake_openai) == 3
    rows = gw.log.wait_rows(5)
    assert [r["cache"] for r in rows] == ["miss", "hit-direct", "hit-direct", "miss", None]
    assert rows[1]["cost"] == 0.0


def test_streamed_miss_is_stored_and_answers_whole(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(cache_config(fake_openai.url))
    with gw.client(default_headers=KEY) as client:
        events = list(client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True))
        text = "".join(e.choices[0].delta.content or "" for e in events if e.choices)
        whole = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MESSAGES)
        assert whole.headers["x-bf-cache"] == "hit-direct"
        assert whole.parse().choices[0].message.content == text
        assert whole.parse().choices[0].finish_reason == "stop"
    assert chat_calls(fake_openai) == 1


def test_errors_and_cut_streams_are_never_stored(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(cache_config(fake_openai.url))
    fake_openai.enqueue(Reply.server_error(500), Reply(cut_after=3))
    with gw.client(default_headers=KEY) as client:
        with pytest.raises(openai.InternalServerError):  # the upstream's 500, in OpenAI's error shape
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(openai.APIError):  # the cut stream ends with an error event
            list(client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True))
        third = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MESSAGES)
        assert third.headers["x-bf-cache"] == "miss"  # nothing was stored by the two failures
        fourth = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MESSAGES)
        assert fourth.headers["x-bf-cache"] == "hit-direct"
    assert chat_calls(fake_openai) == 3


def test_malformed_cache_headers_are_a_400(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(cache_config(fake_openai.url))
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES}
    r = post(gw.url("/v1/chat/completions"), body, {**KEY, "x-bf-cache-ttl": "soon"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = post(
        gw.url("/anthropic/v1/messages"),
        {"model": "openai/gpt-4o-mini", "max_tokens": 10, "messages": MESSAGES},
        {**KEY, "x-bf-cache-threshold": "2"},
    )
    assert r.status_code == 400 and r.json()["type"] == "error"  # Anthropic's error shape
    assert chat_calls(fake_openai) == 0


def test_no_hit_across_virtual_keys(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    governance = {
        "virtual_keys": [
            {"id": "vk-a", "name": "a", "value": "sk-bf-cache-test-a-0001"},
            {"id": "vk-b", "name": "b", "value": "sk-bf-cache-test-b-0002"},
        ]
    }
    gw = start_gateway(cache_config(fake_openai.url, governance=governance))
    for key, expected in (("sk-bf-cache-test-a-0001", "miss"), ("sk-bf-cache-test-b-0002", "miss")):
        with gw.client(api_key=key, default_headers=KEY) as client:
            r = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MESSAGES)
            assert r.headers["x-bf-cache"] == expected
    with gw.client(api_key="sk-bf-cache-test-a-0001", default_headers=KEY) as client:
        r = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MESSAGES)
        assert r.headers["x-bf-cache"] == "hit-direct"
    assert chat_calls(fake_openai) == 2
    rows = gw.log.wait_rows(3)
    assert [(r["virtual_key_id"], r["cache"]) for r in rows] == [
        ("vk-a", "miss"),
        ("vk-b", "miss"),
        ("vk-a", "hit-direct"),
    ]


def test_fifty_concurrent_identical_requests_make_one_upstream_call(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gw = start_gateway(cache_config(fake_openai.url))
    fake_openai.enqueue(Reply(delay=1.0))  # the leader's answer takes a while: the others arrive meanwhile

    async def run() -> list[Any]:
        async with gw.async_client(default_headers=KEY) as client:

            async def one(i: int) -> Any:
                if i % 2:
                    stream = await client.chat.completions.create(
                        model="openai/gpt-4o-mini", messages=MESSAGES, stream=True
                    )
                    return "".join([e.choices[0].delta.content or "" async for e in stream if e.choices])
                r = await client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
                return r.choices[0].message.content

            return await asyncio.gather(*(one(i) for i in range(50)))

    answers = asyncio.run(run())
    assert len(set(answers)) == 1 and answers[0]
    assert chat_calls(fake_openai) == 1


def test_semantic_hit_with_the_mock_embedding(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    cache = {"provider": "mock", "embedding_model": "mock-embed-semantic", "dimension": 256, "threshold": 0.6}
    config = cache_config(fake_openai.url, cache)
    config["plugins"][0]["config"].pop("ttl")
    gw = start_gateway(config)
    asked: Any = [{"role": "user", "content": "what is the capital city of france"}]
    reworded: Any = [{"role": "user", "content": "please tell me what is the capital city of france"}]
    unrelated: Any = [{"role": "user", "content": "how do volcanoes erupt under the ocean"}]
    with gw.client(default_headers=KEY) as client:
        assert (
            client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=asked).headers[
                "x-bf-cache"
            ]
            == "miss"
        )
        hit = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=reworded)
        assert hit.headers["x-bf-cache"] == "hit-semantic"
        assert 0.6 <= float(hit.headers["x-bf-cache-similarity"]) < 1.0
        assert "capital city of france" in (hit.parse().choices[0].message.content or "")
        # a similar prompt with other parameters is not a match
        other = client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=reworded, temperature=0.9
        )
        assert other.headers["x-bf-cache"] == "miss"
        far = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=unrelated)
        assert far.headers["x-bf-cache"] == "miss"
        # a request may raise the threshold above this similarity: then it is a miss
        strict = client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=reworded, extra_headers={"x-bf-cache-threshold": "0.999"}
        )
        assert strict.headers["x-bf-cache"] == "miss"
    assert chat_calls(fake_openai) == 4
    rows = gw.log.wait_rows(1, where="cache = 'hit-semantic'")
    assert rows[0]["cache_similarity"] > 0.6
    assert gw.log.rows("ingress = 'cache'")  # the embedding sub-requests are logged


def test_go_example_config_loads_and_caches(start_gateway: StartGateway, tmp_path: Path) -> None:
    with open("/work/shared/reference/bifrost-go/examples/withsemanticcache.json") as f:
        config = json.load(f)
    gw = start_gateway(config)
    body = {"model": "mock/mock-chat", "messages": MESSAGES}
    first = post(gw.url("/v1/chat/completions"), body, KEY)
    second = post(gw.url("/v1/chat/completions"), body, KEY)
    plain = post(gw.url("/v1/chat/completions"), body)
    assert first.status_code == second.status_code == 200
    assert (first.headers["x-bf-cache"], second.headers["x-bf-cache"]) == ("miss", "hit-direct")
    assert second.json() == first.json()
    assert "x-bf-cache" not in plain.headers  # Go: no cache key, no caching
    assert "vector_store" in gw.output()  # the warning that the Go block has no effect


def test_entries_survive_a_restart(start_gateway: StartGateway, fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    app_dir = tmp_path / "persist"
    gw = start_gateway(cache_config(fake_openai.url), app_dir=app_dir)
    with gw.client(default_headers=KEY) as client:
        first = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MESSAGES)
        assert first.headers["x-bf-cache"] == "miss"
    assert gw.stop() == 0
    again = start_gateway(cache_config(fake_openai.url), app_dir=app_dir)
    with again.client(default_headers=KEY) as client:
        second = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MESSAGES)
        assert second.headers["x-bf-cache"] == "hit-direct"
        assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert chat_calls(fake_openai) == 1

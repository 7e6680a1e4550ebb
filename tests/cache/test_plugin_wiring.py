"""The semantic_cache plugin's wiring in a real gateway: governance (a hit charges no tokens, its request
still counts), the live switch (config.json edited while running), the other endpoints and client
formats, and the request log's `cache` filter."""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import pytest
from fakes import FakeOpenAI
from fakes.reply import Reply
from harness import StartGateway
from harness.process import CLIENT_KEY

from runtime.requestlog.filters import FilterError, parse_filter

from .test_plugin_gateway import KEY, MESSAGES, cache_config, chat_calls, post

VK = "sk-bf-cache-wiring-0001"


def test_a_hit_charges_no_tokens_but_counts_as_a_request(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    governance = {
        "rate_limits": [
            {
                "id": "rl",
                "request_max_limit": 100,
                "request_reset_duration": "1h",
                "token_max_limit": 100_000,
                "token_reset_duration": "1h",
            }
        ],
        "virtual_keys": [{"id": "vk-1", "name": "one", "value": VK, "rate_limit_id": "rl"}],
    }
    fake_openai.always(Reply(usage={"prompt_tokens": 500, "completion_tokens": 500, "total_tokens": 1000}))
    gw = start_gateway(cache_config(fake_openai.url, governance=governance))
    seen = []
    with gw.client(api_key=VK, default_headers=KEY) as client:
        for _ in range(3):
            raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MESSAGES)
            seen.append(raw.headers)
    assert [h["x-bf-cache"] for h in seen] == ["miss", "hit-direct", "hit-direct"]
    assert [h["x-ratelimit-remaining-requests"] for h in seen] == ["99", "98", "97"]  # hits still count
    # Each request holds the same estimate while it runs; the first hit settled at 0 tokens, so the
    # second sees the same remainder (had it been charged its 1000 tokens, 1000 fewer).
    assert seen[2]["x-ratelimit-remaining-tokens"] == seen[1]["x-ratelimit-remaining-tokens"]
    assert chat_calls(fake_openai) == 1


def _write_config(gw: Any, config: dict[str, Any]) -> None:
    (gw.app_dir / "config.json").write_text(json.dumps(config))


def _cache_state(gw: Any, deadline_s: float, want: str | None) -> str | None:
    """Poll until a keyed request's x-bf-cache header is `want` (the watcher applies edits within ~1s)."""
    body = {"model": "mock/mock-chat", "messages": MESSAGES}
    end = time.monotonic() + deadline_s
    state = None
    while time.monotonic() < end:
        state = post(gw.url("/v1/chat/completions"), body, KEY).headers.get("x-bf-cache")
        if state == want or (want == "hit-direct" and state == "hit-direct"):
            return state
        time.sleep(0.2)
    return state


def test_live_switch_on_and_off(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    off = cache_config(fake_openai.url)
    off["plugins"][0]["enabled"] = False
    gw = start_gateway(off)
    assert _cache_state(gw, 0.1, None) is None
    _write_config(gw, cache_config(fake_openai.url))  # switched on while running
    assert _cache_state(gw, 15, "hit-direct") == "hit-direct"
    _write_config(gw, off)  # and off again
    assert _cache_state(gw, 15, None) is None


def test_completions_and_embeddings_are_cached(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(cache_config(fake_openai.url))
    with gw.client(default_headers=KEY) as client:
        states = []
        for _ in range(2):
            r = client.completions.with_raw_response.create(model="openai/gpt-3.5-turbo-instruct", prompt="Say hi")
            states.append(r.headers["x-bf-cache"])
        text = r.parse().choices[0].text
        streamed = client.completions.create(model="openai/gpt-3.5-turbo-instruct", prompt="Say hi", stream=True)
        assert "".join(c.choices[0].text for c in streamed if c.choices) == text
        for _ in range(2):
            e = client.embeddings.with_raw_response.create(model="openai/text-embedding-3-small", input="hello")
            states.append(e.headers["x-bf-cache"])
        assert len(e.parse().data[0].embedding) == 8
    assert states == ["miss", "hit-direct", "miss", "hit-direct"]
    assert len(fake_openai.requests_to("/completions")) - chat_calls(fake_openai) == 1
    assert len(fake_openai.requests_to("/embeddings")) == 1


def test_an_openai_answer_replays_to_an_anthropic_client(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(cache_config(fake_openai.url))
    with gw.client(default_headers=KEY) as client:
        first = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=50)
    with anthropic.Anthropic(
        base_url=gw.base_url + "/anthropic", api_key=CLIENT_KEY, max_retries=0, default_headers=KEY
    ) as claude:
        raw = claude.messages.with_raw_response.create(model="openai/gpt-4o-mini", max_tokens=50, messages=MESSAGES)
        assert raw.headers["x-bf-cache"] == "hit-direct"
        message = raw.parse()
        assert message.content[0].text == first.choices[0].message.content  # type: ignore[union-attr]
        with claude.messages.stream(model="openai/gpt-4o-mini", max_tokens=50, messages=MESSAGES) as stream:
            assert "".join(stream.text_stream) == first.choices[0].message.content
    assert chat_calls(fake_openai) == 1


def test_request_log_cache_filter(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(cache_config(fake_openai.url))
    with gw.client(default_headers=KEY) as client:
        for _ in range(3):
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    with gw.client() as client:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    gw.log.wait_rows(4)
    counts = {}
    for value in ("hit", "hit-direct", "hit-semantic", "miss", "none"):
        where, params = parse_filter({"cache": value}).where()
        counts[value] = len(gw.log.rows(where, tuple(params)))
    assert counts == {"hit": 2, "hit-direct": 2, "hit-semantic": 0, "miss": 1, "none": 1}
    with pytest.raises(FilterError):
        parse_filter({"cache": "maybe"})

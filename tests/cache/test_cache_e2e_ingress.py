"""Response caching end to end through all four ingresses (issue 12 Tests): OpenAI chat completions, the
Responses API, Anthropic messages and GenAI generateContent, each driven by its OFFICIAL SDK against a
real gateway process, the fake OpenAI upstream counting the calls.

For each ingress and each mode (exact; semantic with the mock's `mock-embed-semantic`): a miss, then a
hit answered whole and as a stream; a streamed miss, then hits from what that stream stored, whole and
streamed. Every streamed hit is parsed by the SDK's own stream reader (the Anthropic one accumulates the
whole message and rejects a malformed event sequence). The fake echoes the prompt, so an answer that
names the FIRST prompt while a reworded one was asked can only have come from the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import pytest
from fakes import FakeOpenAI
from fakes.reply import Reply
from google import genai
from google.genai import types
from harness import Gateway, StartGateway, make_config, openai_provider

MODEL = "openai/gpt-4o-mini"
CACHE_KEY = "e2e"
HEADERS = {"x-bf-cache-key": CACHE_KEY}
# Reworded prompts share most words (mock-embed-semantic similarity ~0.94 >= the 0.8 threshold); the
# second pair shares none with the first.
FIRST, FIRST_REWORDED = "What is the capital city of France?", "what is the capital city of France, please?"
SECOND, SECOND_REWORDED = "How do I bake sourdough bread at home?", "how do I bake sourdough bread at home, please?"

EXACT: dict[str, Any] = {"dimension": 1, "ttl": "5m"}
SEMANTIC: dict[str, Any] = {
    "provider": "mock",
    "embedding_model": "mock-embed-semantic",
    "dimension": 256,
    "threshold": 0.8,
    "ttl": "5m",
}


def cache_gateway(start: StartGateway, fake: FakeOpenAI, cache: dict[str, Any]) -> Gateway:
    config = make_config({"openai": openai_provider(fake.url), "mock": {}})
    config["plugins"] = [{"name": "semantic_cache", "enabled": True, "config": cache}]
    return start(config)


@dataclass(frozen=True)
class Said:
    text: str
    cache: str | None  # the x-bf-cache answer header


Ask = Callable[[Gateway, str, bool], Said]


def ask_openai_chat(gw: Gateway, prompt: str, stream: bool) -> Said:
    messages: Any = [{"role": "user", "content": prompt}]
    with gw.client(default_headers=HEADERS) as client:
        if not stream:
            raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages)
            return Said(raw.parse().choices[0].message.content or "", raw.headers.get("x-bf-cache"))
        with client.chat.completions.with_streaming_response.create(
            model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
        ) as resp:
            chunks = list(resp.parse())
            header = resp.headers.get("x-bf-cache")
    assert [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"], "no finish_reason chunk"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0  # asked for: the usage chunk
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 1
    return Said("".join(c.choices[0].delta.content or "" for c in chunks if c.choices), header)


def ask_responses(gw: Gateway, prompt: str, stream: bool) -> Said:
    with gw.client(default_headers=HEADERS) as client:
        if not stream:
            raw = client.responses.with_raw_response.create(model=MODEL, input=prompt)
            return Said(raw.parse().output_text, raw.headers.get("x-bf-cache"))
        with client.responses.with_streaming_response.create(model=MODEL, input=prompt, stream=True) as resp:
            events = list(resp.parse())
            header = resp.headers.get("x-bf-cache")
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
    completed = events[-1].response  # type: ignore[union-attr]
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert deltas == completed.output_text  # the streamed text and the final response agree
    return Said(deltas, header)


def ask_anthropic(gw: Gateway, prompt: str, stream: bool) -> Said:
    messages: Any = [{"role": "user", "content": prompt}]
    with anthropic.Anthropic(
        base_url=gw.base_url + "/anthropic", api_key="sk-ant-placeholder", max_retries=0, default_headers=HEADERS
    ) as client:
        if not stream:
            raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=64, messages=messages)
            message = raw.parse()
            return Said("".join(b.text for b in message.content if b.type == "text"), raw.headers.get("x-bf-cache"))
        # The SDK's own accumulator: it raises on an event out of order, so a parse is a well-formed stream.
        with client.messages.stream(model=MODEL, max_tokens=64, messages=messages) as s:
            final = s.get_final_message()
            header = s.response.headers.get("x-bf-cache")
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0
    return Said("".join(b.text for b in final.content if b.type == "text"), header)


def ask_genai(gw: Gateway, prompt: str, stream: bool) -> Said:
    options = types.HttpOptions(
        base_url=gw.base_url + "/genai",
        headers=HEADERS,
        timeout=60_000,
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    with genai.Client(api_key="AIza-placeholder", http_options=options) as client:
        if not stream:
            resp = client.models.generate_content(model=MODEL, contents=prompt)
            headers = resp.sdk_http_response.headers if resp.sdk_http_response else None
            return Said(resp.text or "", (headers or {}).get("x-bf-cache"))
        chunks = list(client.models.generate_content_stream(model=MODEL, contents=prompt))
    assert chunks and chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    first = chunks[0].sdk_http_response
    return Said("".join(c.text or "" for c in chunks), ((first.headers if first else None) or {}).get("x-bf-cache"))


INGRESSES: dict[str, Ask] = {
    "openai-chat": ask_openai_chat,
    "responses": ask_responses,
    "anthropic": ask_anthropic,
    "genai": ask_genai,
}


def chat_calls(fake: FakeOpenAI) -> int:
    return len(fake.requests_to("/chat/completions"))


@pytest.mark.parametrize("mode", ["exact", "semantic"])
@pytest.mark.parametrize("ingress", list(INGRESSES))
def test_hits_whole_and_streamed_in_each_clients_format(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, ingress: str, mode: str
) -> None:
    ask = INGRESSES[ingress]
    gw = cache_gateway(start_gateway, fake_openai, EXACT if mode == "exact" else SEMANTIC)
    hit = "hit-direct" if mode == "exact" else "hit-semantic"
    again, again_second = (FIRST, SECOND) if mode == "exact" else (FIRST_REWORDED, SECOND_REWORDED)

    # A whole miss, then hits from it: whole and streamed.
    miss = ask(gw, FIRST, False)
    assert miss.text.endswith(FIRST) and miss.cache == "miss"
    assert chat_calls(fake_openai) == 1
    for stream in (False, True):
        said = ask(gw, again, stream)
        assert said.text == miss.text, (stream, said)  # the first prompt's answer, even for the reworded one
        assert said.cache == hit, said
    assert chat_calls(fake_openai) == 1

    # A streamed miss is stored once complete; hits from it, whole and streamed.
    streamed = ask(gw, SECOND, True)
    assert streamed.text.endswith(SECOND) and streamed.cache == "miss"
    assert chat_calls(fake_openai) == 2
    for stream in (True, False):
        said = ask(gw, again_second, stream)
        assert said.text == streamed.text, (stream, said)
        assert said.cache == hit, said
    assert chat_calls(fake_openai) == 2  # four hits, no upstream call


LONG = " ".join(f"Sentence {i} of a long cached answer that must come back in several pieces." for i in range(8))


def test_a_long_answer_is_replayed_in_several_chunks(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.always(Reply(content=LONG))
    gw = cache_gateway(start_gateway, fake_openai, EXACT)
    assert ask_openai_chat(gw, FIRST, False).cache == "miss"
    messages: Any = [{"role": "user", "content": FIRST}]
    with (
        gw.client(default_headers=HEADERS) as client,
        client.chat.completions.with_streaming_response.create(model=MODEL, messages=messages, stream=True) as r,
    ):
        assert r.headers["x-bf-cache"] == "hit-direct"
        pieces = [c.choices[0].delta.content for c in r.parse() if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 5 and "".join(pieces) == LONG
    assert chat_calls(fake_openai) == 1
    # Anthropic's max_tokens is a parameter of its own entry: a whole miss first, then the streamed hit.
    assert ask_anthropic(gw, FIRST, False).cache == "miss"
    with anthropic.Anthropic(
        base_url=gw.base_url + "/anthropic", api_key="sk-ant-placeholder", max_retries=0, default_headers=HEADERS
    ) as ac:
        events = list(ac.messages.create(model=MODEL, max_tokens=64, messages=messages, stream=True))
    deltas = [e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"]
    assert len(deltas) >= 5 and "".join(deltas) == LONG
    assert chat_calls(fake_openai) == 2


def test_the_same_request_through_another_api_shares_the_entry(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    # The key is computed on the gateway's internal request: one question asked through two APIs is one
    # entry when its parameters agree (an Anthropic request always carries max_tokens).
    gw = cache_gateway(start_gateway, fake_openai, EXACT)
    messages: Any = [{"role": "user", "content": FIRST}]
    with gw.client(default_headers=HEADERS) as client:
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, max_tokens=64)
        assert raw.headers["x-bf-cache"] == "miss"
    assert ask_anthropic(gw, FIRST, False) == Said(raw.parse().choices[0].message.content or "", "hit-direct")
    genai_miss = ask_genai(gw, SECOND, False)
    assert genai_miss.cache == "miss"
    assert ask_responses(gw, SECOND, True) == Said(genai_miss.text, "hit-direct")
    assert chat_calls(fake_openai) == 2

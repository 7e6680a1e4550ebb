"""Fallbacks: the body field `fallbacks: ["provider/model", ...]` is tried in order after the primary
(and its retries) fails — only while no byte of the response has reached the client."""

from __future__ import annotations

import aiohttp
import openai
import pytest
from fakes import FakeOpenAI, Reply
from harness import Gateway, StartGateway, assert_error_shape, custom_provider, make_config, openai_provider, read_sse

MESSAGES = [{"role": "user", "content": "fall back"}]
FALLBACKS = {"fallbacks": ["backup/gpt-4o-mini"]}


@pytest.fixture
def two_providers(start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI) -> Gateway:
    return start_gateway(
        make_config(
            {
                "openai": openai_provider(fake_openai.url, max_retries=1),
                "backup": custom_provider(fake_openai_2.url, keys=("sk-fake-2",)),
            }
        )
    )


def test_fallback_to_second_provider(
    two_providers: Gateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    fake_openai.always(Reply.server_error(500))
    with two_providers.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o", messages=MESSAGES, extra_body=FALLBACKS
        )
    answer = raw.parse()
    assert answer.choices[0].message.content == "fake-openai-2: fall back"
    assert len(fake_openai.requests) == 2, "the primary and its one retry come first"
    (rec,) = fake_openai_2.requests
    assert rec.body["model"] == "gpt-4o-mini"
    assert rec.bearer == "sk-fake-2"
    assert "fallbacks" not in rec.body, "the gateway's own field is not sent to providers"
    assert "fallbacks" not in fake_openai.requests[0].body
    row = two_providers.log.row_for(raw.headers["x-request-id"])
    assert row["fallback_index"] == 1
    assert row["provider"] == "backup"
    assert row["status"] == 200


def test_no_fallback_when_primary_succeeds(
    two_providers: Gateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    with two_providers.client() as client:
        answer = client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES, extra_body=FALLBACKS)
    assert answer.choices[0].message.content == "fake-openai: fall back"
    assert fake_openai_2.requests == []


def test_fallback_after_rate_limit_and_connection_error(
    two_providers: Gateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    # The retry goes out on the kept-alive socket of the 429; a drop there, before any response byte, is
    # the stale keep-alive race, which the client re-sends once on a fresh connection (runtime/net/client.py).
    # The drop on that fresh connection is the connection error that makes the gateway fall back.
    fake_openai.enqueue(Reply.rate_limited(retry_after=0), Reply(drop=True), Reply(drop=True))
    with two_providers.client() as client:
        answer = client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES, extra_body=FALLBACKS)
    assert answer.choices[0].message.content == "fake-openai-2: fall back"
    assert len(fake_openai.requests) == 3


def test_fallback_for_stream_before_first_byte(
    two_providers: Gateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    fake_openai.always(Reply.server_error(503))
    with two_providers.client() as client:
        chunks = list(
            client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES, stream=True, extra_body=FALLBACKS)
        )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "fake-openai-2: fall back"
    assert len(fake_openai_2.requests) == 1


async def test_never_fall_back_after_stream_bytes_were_sent_with_recovery_off(
    two_providers: Gateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    # Mid-stream recovery (tests/resume/) continues such a stream; turned off, bytes sent end it.
    fake_openai.enqueue(Reply(cut_after=2))
    body = {"model": "openai/gpt-4o", "messages": MESSAGES, "stream": True, **FALLBACKS}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            two_providers.url("/v1/chat/completions"), json=body, headers={"x-bf-stream-resume": "off"}
        ) as resp,
    ):
        events, _ = await read_sse(resp)
    assert fake_openai_2.requests == [], "bytes had reached the client: falling back would splice two answers"
    assert not any(e.is_done for e in events)
    assert events and events[-1].is_error


def test_all_fail_returns_primary_error_with_every_attempt(
    two_providers: Gateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    fake_openai.always(Reply.error(503, "primary is overloaded", "server_error"))
    fake_openai_2.always(Reply.error(500, "backup exploded", "server_error"))
    with two_providers.client() as client, pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES, extra_body=FALLBACKS)
    assert err.value.status_code == 503, "the client gets the primary's error"
    body = err.value.response.json()
    error = assert_error_shape(body, 503)
    assert "primary is overloaded" in error["message"]
    extra = body["extra_fields"]
    assert extra["provider"] == "openai"
    assert extra["model_requested"] in ("gpt-4o", "openai/gpt-4o")
    attempts = extra["attempts"]
    assert len(attempts) == 3, f"primary + 1 retry + fallback, got {attempts}"
    assert "backup" in str(attempts), "the fallback's attempt is listed too"


def test_fallbacks_tried_in_order(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    second = FakeOpenAI(keys=("sk-2",), name="second").start()
    third = FakeOpenAI(keys=("sk-3",), name="third").start()
    try:
        gateway = start_gateway(
            make_config(
                {
                    "openai": openai_provider(fake_openai.url),
                    "second": custom_provider(second.url, keys=("sk-2",)),
                    "third": custom_provider(third.url, keys=("sk-3",)),
                }
            )
        )
        fake_openai.always(Reply.server_error(500))
        second.always(Reply.rate_limited())
        with gateway.client() as client:
            answer = client.chat.completions.create(
                model="openai/gpt-4o",
                messages=MESSAGES,
                extra_body={"fallbacks": ["second/m2", "third/m3"]},
            )
        assert answer.choices[0].message.content == "third: fall back"
        assert [r.body["model"] for r in second.requests] == ["m2"]
        assert [r.body["model"] for r in third.requests] == ["m3"]
    finally:
        second.stop()
        third.stop()

"""Mid-stream recovery (issue 13 item 6): a chat stream that breaks after bytes reached the client is
finished by the next target, and the client sees one seamless stream (runtime/core/resume.py)."""

from __future__ import annotations

import pytest
from fakes import FakeOpenAI, Reply
from fakes.native import FakeAnthropic
from fakes.native.common import NativeReply
from harness import Gateway, StartGateway, openai_provider
from resume_helpers import (
    DELIVERED,
    FULL,
    MESSAGES,
    PRICES,
    anthropic_client,
    attempts_of,
    config,
    stream_raw,
    text_of,
)

from runtime.config.load import ConfigError, parse_document
from runtime.config.model import Tuning

TO_ANTHROPIC = {"fallbacks": ["anthropic/claude-fake"]}
TO_BACKUP = {"fallbacks": ["backup/gpt-4o-mini"]}


def body(fallbacks: dict[str, list[str]], **extra: object) -> dict[str, object]:
    return {"model": "openai/gpt-4o", "messages": MESSAGES, "stream": True, **fallbacks, **extra}


@pytest.fixture
def with_anthropic(start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> Gateway:
    fake_openai.enqueue(Reply(content=FULL, cut_after=3))  # role chunk, "Alpha ", "beta ", then the cut
    fake_anthropic.always(Reply(content=FULL))
    return start_gateway(config(fake_openai.url, anthropic_url=fake_anthropic.url))


def test_a_cut_stream_is_continued_by_a_prefill_target_for_the_openai_sdk(
    with_anthropic: Gateway, fake_anthropic: FakeAnthropic
) -> None:
    with with_anthropic.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o", messages=MESSAGES, stream=True, extra_body=TO_ANTHROPIC
        )
        chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == FULL
    assert len({c.id for c in chunks}) == 1, "the continuation keeps the first stream's chunk id"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.role) == 1, "one role chunk"
    (rec,) = fake_anthropic.requests
    last = rec.body["messages"][-1]
    assert last["role"] == "assistant"
    prefill = last["content"] if isinstance(last["content"], str) else last["content"][0]["text"]
    assert prefill == DELIVERED.rstrip(), "Anthropic refuses a prefill that ends in whitespace"

    row = with_anthropic.log.row_for(raw.headers["x-request-id"])
    assert row["status"] == 200
    assert row["provider"] == "anthropic"
    assert row["fallback_index"] == 1
    (broken,) = attempts_of(row)
    assert broken["provider"] == "openai"
    assert broken["after_first_byte"] is True
    assert broken["delivered_chars"] == len(DELIVERED)
    assert broken["usage_estimated"] is True, "the cut came before the provider's usage chunk"
    # usage and cost: the broken attempt's (estimated) plus the continuation's (the fake counts words)
    cont_in = len(f"{MESSAGES[0]['content']} {prefill}".split())  # the prompt with the prefill
    cont_out = 4  # "gamma delta epsilon zeta"
    assert row["prompt_tokens"] == broken["usage"]["prompt_tokens"] + cont_in
    assert row["completion_tokens"] == broken["usage"]["completion_tokens"] + cont_out
    expected = (
        broken["usage"]["prompt_tokens"] * PRICES["openai"][0]
        + broken["usage"]["completion_tokens"] * PRICES["openai"][1]
        + cont_in * PRICES["anthropic"][0]
        + cont_out * PRICES["anthropic"][1]
    )
    assert row["cost"] == pytest.approx(expected)
    assert FULL in row["output"], "the logged answer is the one the client got, across both streams"


async def test_the_client_gets_one_done_and_no_error_event(with_anthropic: Gateway) -> None:
    events, _rid = await stream_raw(with_anthropic, body(TO_ANTHROPIC))
    assert text_of(events) == FULL
    assert sum(1 for e in events if e.is_done) == 1
    assert events[-1].is_done
    assert not any(e.is_error for e in events)


def test_the_anthropic_sdk_gets_one_seamless_message(with_anthropic: Gateway) -> None:
    with (
        anthropic_client(with_anthropic) as client,
        client.messages.stream(
            model="openai/gpt-4o", max_tokens=200, messages=MESSAGES, extra_body=TO_ANTHROPIC
        ) as stream,
    ):
        events = list(stream)
        message = stream.get_final_message()
    assert "".join(b.text for b in message.content if b.type == "text") == FULL
    assert [e.type for e in events].count("message_start") == 1
    assert [e.type for e in events].count("message_stop") == 1
    assert message.stop_reason == "end_turn"


def test_a_fallback_that_refuses_the_prefill_answers_again_and_only_the_rest_is_relayed(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    fake_openai.enqueue(Reply(content=FULL, cut_after=3))
    refusal = {"type": "error", "error": {"type": "invalid_request_error", "message": "prefill is not supported"}}
    fake_anthropic.enqueue(NativeReply(status=400, json=refusal))
    fake_anthropic.always(Reply(content=FULL))
    gateway = start_gateway(config(fake_openai.url, anthropic_url=fake_anthropic.url))
    with gateway.client() as client:
        chunks = list(
            client.chat.completions.create(
                model="openai/gpt-4o", messages=MESSAGES, stream=True, extra_body=TO_ANTHROPIC
            )
        )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == FULL
    first, second = fake_anthropic.requests
    assert first.body["messages"][-1]["role"] == "assistant", "the prefill was tried first"
    assert second.body["messages"][-1]["role"] == "user", "then the original request, without it"


def test_a_target_without_prefill_replays_and_the_matching_prefix_is_relayed_once(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(content=FULL, cut_after=3))
    fake_openai_2.always(Reply(content=FULL))
    gateway = start_gateway(config(fake_openai.url, backup_url=fake_openai_2.url))
    with gateway.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o", messages=MESSAGES, stream=True, extra_body=TO_BACKUP
        )
        chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == FULL
    (rec,) = fake_openai_2.requests
    assert rec.body["messages"] == MESSAGES, "no prefill for a provider that cannot continue"
    assert "continue_final_message" not in rec.body
    row = gateway.log.row_for(raw.headers["x-request-id"])
    assert row["status"] == 200 and row["provider"] == "backup"


async def test_a_replay_that_diverges_ends_with_the_original_failure(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(content=FULL, cut_after=3))
    fake_openai_2.always(Reply(content="Alpha gamma something else"))
    gateway = start_gateway(config(fake_openai.url, backup_url=fake_openai_2.url))
    events, rid = await stream_raw(gateway, body(TO_BACKUP))
    assert text_of(events) == DELIVERED, "nothing of the diverging answer reaches the client"
    assert not any(e.is_done for e in events)
    error = events[-1].json()["error"]
    assert "openai" in error["message"], error
    assert "backup" not in error["message"]
    row = gateway.log.row_for(rid)
    assert row["status"] >= 500 and row["provider"] == "openai"
    attempts = attempts_of(row)
    assert attempts[0]["after_first_byte"] is True and attempts[0]["provider"] == "openai"
    assert len(fake_openai_2.requests) == 1


async def test_a_stalled_stream_is_continued(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    fake_openai.enqueue(Reply(content=FULL, stall_after=3, stall=30))
    fake_anthropic.always(Reply(content=FULL))
    primary = openai_provider(fake_openai.url, stream_idle_timeout_in_seconds=1)
    gateway = start_gateway(config(fake_openai.url, anthropic_url=fake_anthropic.url, primary=primary))
    events, rid = await stream_raw(gateway, body(TO_ANTHROPIC))
    assert text_of(events) == FULL
    assert events[-1].is_done
    (broken,) = attempts_of(gateway.log.row_for(rid))
    assert broken["type"] and broken["after_first_byte"] is True


async def test_an_upstream_error_event_is_continued(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    # The primary is Anthropic this time: it sends an `overloaded_error` event after three words.
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    fake_anthropic.enqueue(NativeReply(content=FULL, cut_after=5, stream_error=overloaded, chunk_delay=0.05))
    fake_openai.always(Reply(content=FULL))
    gateway = start_gateway(config(fake_openai.url, anthropic_url=fake_anthropic.url))
    request = {"model": "anthropic/claude-fake", "messages": MESSAGES, "stream": True, "fallbacks": ["openai/gpt-4o"]}
    events, rid = await stream_raw(gateway, request)
    assert text_of(events) == FULL
    assert sum(1 for e in events if e.is_done) == 1
    row = gateway.log.row_for(rid)
    (broken,) = attempts_of(row)
    assert broken["provider"] == "anthropic" and broken["after_first_byte"] is True
    assert "usage_estimated" not in broken, "Anthropic reported its input tokens at message_start"


async def test_recovery_is_off_with_the_request_header(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    fake_openai.enqueue(Reply(content=FULL, cut_after=3))
    gateway = start_gateway(config(fake_openai.url, anthropic_url=fake_anthropic.url))
    events, _rid = await stream_raw(gateway, body(TO_ANTHROPIC), headers={"x-bf-stream-resume": "off"})
    assert fake_anthropic.requests == []
    assert text_of(events) == DELIVERED
    assert events[-1].is_error and not any(e.is_done for e in events)


async def test_recovery_is_off_with_the_client_setting(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    fake_openai.enqueue(Reply(content=FULL, cut_after=3))
    gateway = start_gateway(config(fake_openai.url, anthropic_url=fake_anthropic.url, stream_resume=False))
    events, rid = await stream_raw(gateway, body(TO_ANTHROPIC))
    assert fake_anthropic.requests == []
    assert events[-1].is_error
    (broken,) = attempts_of(gateway.log.row_for(rid))
    assert broken["after_first_byte"] is True


async def test_an_openai_compatible_server_declared_able_gets_continue_final_message(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(content=FULL, cut_after=3))
    fake_openai_2.always(Reply(content="gamma delta epsilon zeta"))  # what a vLLM server continues with
    document = config(fake_openai.url, backup_url=fake_openai_2.url)
    document["providers"]["backup"]["supports_assistant_prefill"] = True
    gateway = start_gateway(document)
    events, rid = await stream_raw(gateway, body(TO_BACKUP))
    assert text_of(events) == FULL
    (rec,) = fake_openai_2.requests
    assert rec.body["messages"][-1] == {"role": "assistant", "content": DELIVERED}
    assert rec.body["continue_final_message"] is True and rec.body["add_generation_prompt"] is False
    assert gateway.log.row_for(rid)["provider"] == "backup"


@pytest.mark.parametrize(
    ("where", "field", "path"),
    [
        ("providers", "supports_assistant_prefill", "providers.openai.supports_assistant_prefill"),
        ("client", "stream_resume", "client.stream_resume"),
    ],
)
def test_the_switches_must_be_booleans(where: str, field: str, path: str) -> None:
    document = config("http://127.0.0.1:9")
    target = document["providers"]["openai"] if where == "providers" else document["client"]
    target[field] = "yes"
    with pytest.raises(ConfigError) as err:
        parse_document(document, {}, Tuning())
    assert path in str(err.value)


async def test_a_continuation_that_breaks_too_is_continued_again_and_every_attempt_is_billed(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    fake_openai.enqueue(Reply(content=FULL, cut_after=3))  # delivers "Alpha beta "
    # Anthropic continues with " gamma delta epsilon zeta": message_start, ping, block start, " ", "gamma " then a cut
    fake_anthropic.enqueue(NativeReply(content=FULL, cut_after=5, chunk_delay=0.05))
    fake_openai_2.always(Reply(content="delta epsilon zeta"))
    document = config(fake_openai.url, anthropic_url=fake_anthropic.url, backup_url=fake_openai_2.url)
    document["providers"]["backup"]["supports_assistant_prefill"] = True
    gateway = start_gateway(document)
    request = body({"fallbacks": ["anthropic/claude-fake", "backup/gpt-4o-mini"]})
    events, rid = await stream_raw(gateway, request)
    assert text_of(events) == FULL
    assert sum(1 for e in events if e.is_done) == 1
    (rec,) = fake_openai_2.requests
    assert rec.body["messages"][-1]["content"] == "Alpha beta gamma ", "the prefill is all the client has"
    row = gateway.log.row_for(rid)
    first, second = attempts_of(row)
    assert (first["provider"], second["provider"]) == ("openai", "anthropic")
    assert second["fallback_index"] == 1 and row["fallback_index"] == 2
    assert second["delivered_chars"] == len("gamma ")
    backup_usage = (len(["Hello", "there", "Alpha", "beta", "gamma"]), 3)  # the fake OpenAI counts words
    assert row["prompt_tokens"] >= first["usage"]["prompt_tokens"] + second["usage"]["prompt_tokens"]
    assert row["completion_tokens"] == (
        first["usage"]["completion_tokens"] + second["usage"]["completion_tokens"] + backup_usage[1]
    )


async def test_recoveries_are_bounded(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    fake_openai.enqueue(Reply(content=FULL, cut_after=3))
    fake_anthropic.enqueue(NativeReply(content=FULL, cut_after=5, chunk_delay=0.05))
    fake_openai_2.always(Reply(content="delta epsilon zeta", cut_after=2, chunk_delay=0.05))  # breaks as well
    third = FakeOpenAI(keys=("sk-3",), name="third").start()
    try:
        document = config(fake_openai.url, anthropic_url=fake_anthropic.url, backup_url=fake_openai_2.url)
        document["providers"]["backup"]["supports_assistant_prefill"] = True
        document["providers"]["third"] = openai_provider(third.url, keys=("sk-3",))
        document["providers"]["third"]["custom_provider_config"] = {"base_provider_type": "openai"}
        gateway = start_gateway(document)
        fallbacks = ["anthropic/claude-fake", "backup/gpt-4o-mini", "third/gpt-4o-mini"]
        events, rid = await stream_raw(gateway, body({"fallbacks": fallbacks}))
    finally:
        third.stop()
    assert third.requests == [], f"at most {2} recoveries per stream"
    assert events[-1].is_error and not any(e.is_done for e in events)
    assert len(attempts_of(gateway.log.row_for(rid))) == 3


async def test_no_recovery_starts_once_the_request_deadline_has_passed(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    fake_openai.enqueue(Reply(content=FULL, stall_after=3, stall=30))
    primary = openai_provider(fake_openai.url, stream_idle_timeout_in_seconds=3)  # the stall ends after the deadline
    document = config(fake_openai.url, anthropic_url=fake_anthropic.url, primary=primary, request_deadline_in_seconds=1)
    gateway = start_gateway(document)
    events, _rid = await stream_raw(gateway, body(TO_ANTHROPIC))
    assert fake_anthropic.requests == []
    assert text_of(events) == DELIVERED and events[-1].is_error

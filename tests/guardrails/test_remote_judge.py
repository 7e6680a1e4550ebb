"""The LLM judge through an in-process Gateway over the fake OpenAI: a strict yes/no chat call (temperature 0,
a few tokens, the texts fenced as data), "yes" a whole-part finding per text, "no" none, anything else, a
slow model or a failed call a DetectorError that repeats neither the text nor the model's words."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fakes import FakeOpenAI, Reply

from runtime.config.load import ConfigError
from runtime.guardrails.remote.judge import DEFAULT_SYSTEM, MAX_TOKENS, JudgeDetector, build
from runtime.guardrails.types import DetectorError, Finding, Subject

from .remote_gateway import gateway_over

PATH = "guardrails_config.guardrail_providers[4].config"
QUESTION = "Does this text ask for malware?"
SECRET = "sk-live-0123456789abcdef"


def judge(**config: Any) -> JudgeDetector:
    return build({"model": "openai/gpt-4o-mini", "question": QUESTION, **config}, PATH, [], 5.0, policy="no-malware")


def subject(*texts: str, stage: str = "input") -> Subject:
    return Subject(stage, list(texts), None, {})


@pytest.mark.parametrize("answer", ["yes", "Yes.", " YES! ", '"yes"'])
async def test_yes_is_a_whole_part_finding_per_text(fake_openai: FakeOpenAI, answer: str) -> None:
    fake_openai.enqueue(Reply(content=answer))
    detector = judge()
    assert detector.remote and not detector.streamable and detector.kind == "llm_judge"
    async with gateway_over(fake_openai.url) as (gw, finished):
        found = await detector.check(subject("write me a keylogger", "in C"), gw)
    assert found == [Finding("judge:no-malware", 0), Finding("judge:no-malware", 1)]
    sent = fake_openai.requests_to("/chat/completions")[0].body
    assert sent["model"] == "gpt-4o-mini" and sent["temperature"] == 0 and sent["max_tokens"] == MAX_TOKENS
    system, user = sent["messages"]
    assert system == {"role": "system", "content": DEFAULT_SYSTEM}
    assert user["role"] == "user" and QUESTION in user["content"]
    assert "<text>\nwrite me a keylogger\n\nin C\n</text>" in user["content"]
    assert finished.rows[0]["endpoint"] == "chat" and finished.rows[0]["ingress"] == "guardrails"
    assert finished.rows[0]["input_raw"] is None  # the guardrail's call keeps no content in the log
    assert "keylogger" not in finished.rows[0]["logged"] and QUESTION not in finished.rows[0]["logged"]


@pytest.mark.parametrize("answer", ["no", "No.", "NO"])
async def test_no_is_nothing(fake_openai: FakeOpenAI, answer: str) -> None:
    fake_openai.enqueue(Reply(content=answer))
    async with gateway_over(fake_openai.url) as (gw, _):
        assert await judge().check(subject("what is a virus?"), gw) == []


@pytest.mark.parametrize("answer", ["maybe", "yes and no", f"Yes, it contains {SECRET}", "", "no idea"])
async def test_unclear_answers_are_errors_without_the_words(fake_openai: FakeOpenAI, answer: str) -> None:
    fake_openai.enqueue(Reply(content=answer))
    async with gateway_over(fake_openai.url) as (gw, _):
        with pytest.raises(DetectorError) as caught:
            await judge().check(subject(f"key {SECRET}"), gw)
    assert str(caught.value) == "judge no-malware: unclear answer"


async def test_tool_calls_instead_of_text_are_unclear(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(tool_calls=({"id": "c1", "name": "f", "arguments": "{}"},)))
    async with gateway_over(fake_openai.url) as (gw, _):
        with pytest.raises(DetectorError, match="unclear answer"):
            await judge().check(subject("a"), gw)


async def test_system_override_and_empty_subjects(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(content="no"))
    async with gateway_over(fake_openai.url) as (gw, _):
        detector = judge(system="Answer yes or no only.")
        assert await detector.check(subject("", ""), gw) == []  # nothing to judge: no call
        assert await detector.check(subject("hello"), gw) == []
    (request,) = fake_openai.requests_to("/chat/completions")
    assert request.body["messages"][0]["content"] == "Answer yes or no only."


async def test_slow_model_times_out_within_the_bound(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(content="yes", delay=20))
    detector = build({"model": "openai/gpt-4o-mini", "question": QUESTION}, PATH, [], 0.5)
    async with gateway_over(fake_openai.url) as (gw, finished):
        with pytest.raises(DetectorError) as caught:
            await asyncio.wait_for(detector.check(subject(SECRET), gw), 10)
    assert str(caught.value) == "judge guardrail_providers[4]: timeout"
    assert finished.rows[0]["status"] == 504


async def test_provider_errors_name_only_class_and_status(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.error(400, f"your text {SECRET} is bad", "invalid_request_error"))
    async with gateway_over(fake_openai.url) as (gw, _):
        with pytest.raises(DetectorError) as caught:
            await judge().check(subject(SECRET), gw)
    assert str(caught.value) == "judge no-malware: invalid_request_error (status 400)"


async def test_retries_through_the_gateway(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.server_error(503), Reply(content="yes"))
    async with gateway_over(fake_openai.url, max_retries=1, retry_backoff_initial_ms=1) as (gw, _):
        assert await judge().check(subject("a"), gw) == [Finding("judge:no-malware", 0)]
    assert len(fake_openai.requests_to("/chat/completions")) == 2


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({"question": QUESTION}, "model"),
        ({"model": "openai/gpt-4o-mini"}, "question"),
        ({"model": "openai/gpt-4o-mini", "question": "  "}, "question"),
        ({"model": "openai/gpt-4o-mini", "question": QUESTION, "system": 3}, "system"),
        ({"model": "openai/gpt-4o-mini", "question": QUESTION, "prompt": "x"}, "prompt"),
    ],
)
def test_config_errors_name_the_field(config: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build(config, PATH, [], 1.0)
    assert caught.value.path == f"{PATH}.{where}"

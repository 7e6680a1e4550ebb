"""The moderation guardrail through an in-process Gateway over the fake OpenAI: the call is routed like any
(the provider's key, a row with endpoint "moderations" and ingress "guardrails", no content kept), flagged
categories become whole-part findings with scores, `categories` and `threshold` narrow them, and a slow,
failing or malformed answer is a DetectorError that names neither the text nor the provider's message."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fakes import FakeOpenAI, Reply

from runtime.config.load import ConfigError
from runtime.guardrails.remote.moderation import build
from runtime.guardrails.types import DetectorError, Finding, Subject

from .remote_gateway import gateway_over

PATH = "guardrails_config.guardrail_providers[1].config"
MODEL = "openai/omni-moderation-latest"


def subject(*texts: str) -> Subject:
    return Subject("input", list(texts), None, {})


async def test_flagged_categories_are_whole_part_findings(fake_openai: FakeOpenAI) -> None:
    detector = build({"model": MODEL}, PATH, [], 5.0)
    assert detector.remote and not detector.streamable and detector.kind == "moderation"
    async with gateway_over(fake_openai.url) as (gw, finished):
        found = await detector.check(subject("hello", "I will kill it, hateful", "borderline"), gw)
    assert found == [
        Finding("moderation:hate", 1, 0, -1, 0.88),
        Finding("moderation:violence", 1, 0, -1, 0.91),
    ]
    rec = fake_openai.requests_to("/v1/moderations")[0]
    assert rec.body == {"model": "omni-moderation-latest", "input": ["hello", "I will kill it, hateful", "borderline"]}
    assert rec.headers["authorization"] == "Bearer sk-fake-1"
    assert finished.rows == [
        {
            "endpoint": "moderations",
            "ingress": "guardrails",
            "status": 200,
            "error": None,
            "input_raw": None,
            "logged": "null",
        }
    ]


async def test_categories_and_threshold(fake_openai: FakeOpenAI) -> None:
    only_hate = build({"model": MODEL, "categories": ["hate"]}, PATH, [], 5.0)
    low = build({"model": MODEL, "threshold": 0.3, "categories": ["violence"]}, PATH, [], 5.0)
    high = build({"model": MODEL, "threshold": 0.95}, PATH, [], 5.0)
    async with gateway_over(fake_openai.url) as (gw, _):
        assert await only_hate.check(subject("kill hateful"), gw) == [Finding("moderation:hate", 0, 0, -1, 0.88)]
        # borderline scores violence 0.4 without the model flagging it: the threshold counts it
        assert await low.check(subject("borderline"), gw) == [Finding("moderation:violence", 0, 0, -1, 0.4)]
        assert await high.check(subject("kill hateful"), gw) == []
        assert await low.check(subject(), gw) == []  # nothing to check: no call
    assert len(fake_openai.requests_to("/v1/moderations")) == 3


@pytest.mark.parametrize(
    ("reply", "cause"),
    [
        (Reply.server_error(500, path_contains="/moderations"), "server_error (status 500)"),
        (Reply(json={"id": "x", "results": []}, path_contains="/moderations"), "bad answer"),
        (Reply(json={"id": "x", "results": [{"flagged": True}]}, path_contains="/moderations"), "bad answer"),
        (Reply.garbage(path_contains="/moderations"), "(status 502)"),
    ],
)
async def test_failures_are_detector_errors(fake_openai: FakeOpenAI, reply: Reply, cause: str) -> None:
    fake_openai.enqueue(reply)
    detector = build({"model": MODEL}, PATH, [], 5.0)
    async with gateway_over(fake_openai.url) as (gw, finished):
        with pytest.raises(DetectorError) as caught:
            await detector.check(subject("secret text 4111111111111111"), gw)
    message = str(caught.value)
    assert message.startswith("moderation guardrail_providers[1]: ") and cause in message, message
    assert "4111" not in message and "processing your request" not in message
    assert finished.rows[0]["endpoint"] == "moderations"


async def test_slow_provider_times_out_within_the_bound(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(delay=20, path_contains="/moderations"))
    detector = build({"model": MODEL}, PATH, [], 0.5)
    async with gateway_over(fake_openai.url) as (gw, finished):
        with pytest.raises(DetectorError) as caught:
            await asyncio.wait_for(detector.check(subject("a"), gw), 10)
    assert str(caught.value) == "moderation guardrail_providers[1]: timeout"
    assert finished.rows[0]["status"] == 504


async def test_unbound_gateway_and_unknown_model(fake_openai: FakeOpenAI) -> None:
    detector = build({"model": "nope/x"}, PATH, [], 5.0, policy="mod")
    with pytest.raises(DetectorError, match="the gateway is not bound"):
        await detector.check(subject("a"), None)
    async with gateway_over(fake_openai.url) as (gw, _):
        with pytest.raises(DetectorError) as caught:
            await detector.check(subject("a"), gw)
    assert str(caught.value).startswith("moderation mod: ")


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({}, "model"),
        ({"model": ""}, "model"),
        ({"model": MODEL, "categories": "hate"}, "categories"),
        ({"model": MODEL, "categories": []}, "categories"),
        ({"model": MODEL, "categories": ["hate", 3]}, "categories[1]"),
        ({"model": MODEL, "threshold": 0}, "threshold"),
        ({"model": MODEL, "threshold": 1.5}, "threshold"),
        ({"model": MODEL, "threshold": True}, "threshold"),
        ({"model": MODEL, "treshold": 0.5}, "treshold"),
    ],
)
def test_config_errors_name_the_field(config: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build(config, PATH, [], 1.0)
    assert caught.value.path == f"{PATH}.{where}"

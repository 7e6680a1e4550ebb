"""Issue 9 item 4 (the catch-all): an unexpected bug of ours still answers JSON in the route's error shape
with status 500, is logged as a request-log row with status 500 (not 0) and is counted in /metrics.

The bug is injected deterministically through the gateway's environment (BIFROST_TEST_FAULTS=1 turns on
test-only fault points: a plugin that raises for requests whose `user` is FAULT_USER, and a route that
raises; runtime/http/internal.py), so the real process runs unpatched. Before the fix the same exception
gave aiohttp's plain-text 500 and a row with status 0, which /metrics skipped.
"""

from __future__ import annotations

import urllib.request

import aiohttp
from fakes import FakeOpenAI
from harness import Gateway, StartGateway, make_config, openai_provider
from prometheus_client.parser import text_string_to_metric_families

from runtime.http.internal import FAULT_ENV, FAULT_PATH, FAULT_USER

SECRET = "sk-test-secret-must-not-leak"  # in the injected exception's text
MESSAGES = [{"role": "user", "content": "hello"}]


def _gateway(start_gateway: StartGateway, fake: FakeOpenAI) -> Gateway:
    return start_gateway(make_config({"openai": openai_provider(fake.url)}), env={FAULT_ENV: "1"})


def _requests_total(gateway: Gateway, status: str) -> float:
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(gateway.url("/metrics")) as answer:
        text = answer.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "bifrost_requests_total" and sample.labels.get("status") == status:
                total += sample.value
    return total


async def test_a_bug_in_an_inference_route_answers_json_500_logged_and_counted(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = _gateway(start_gateway, fake_openai)
    async with aiohttp.ClientSession() as session:
        openai_body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "user": FAULT_USER}
        async with session.post(gateway.url("/v1/chat/completions"), json=openai_body) as response:
            assert response.status == 500
            assert response.content_type == "application/json"
            text = await response.text()
            answer = await response.json()
            openai_rid = response.headers["x-request-id"]
        # Anthropic's metadata.user_id becomes the internal `user`: the same fault, the Anthropic shape.
        anthropic_body = {
            "model": "openai/gpt-4o-mini",
            "messages": MESSAGES,
            "max_tokens": 5,
            "metadata": {"user_id": FAULT_USER},
        }
        async with session.post(gateway.url("/anthropic/v1/messages"), json=anthropic_body) as response:
            anthropic_status = response.status
            anthropic_answer = await response.json()
            anthropic_rid = response.headers["x-request-id"]
    assert answer["error"]["code"] == "internal_error", answer
    assert openai_rid in answer["error"]["message"], "the message names the request id to look up"
    assert SECRET not in text and "RuntimeError" not in text, "the exception's text never reaches the client"
    row = gateway.log.row_for(openai_rid)
    assert row["status"] == 500 and row["error_type"] == "internal_error", row
    assert SECRET not in (row["error"] or "")
    assert anthropic_status == 500, anthropic_answer
    assert anthropic_answer["type"] == "error" and anthropic_answer["error"]["type"] == "api_error"
    assert anthropic_rid in anthropic_answer["error"]["message"]
    assert gateway.log.row_for(anthropic_rid)["status"] == 500
    assert _requests_total(gateway, "500") == 2
    assert _requests_total(gateway, "0") == 0
    gateway.stop()
    stderr = gateway.stderr_path.read_text()
    assert f"internal error in request {openai_rid}" in stderr and "Traceback" in stderr, "traceback logged"


async def test_a_bug_in_any_other_route_answers_json_500(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = _gateway(start_gateway, fake_openai)
    async with aiohttp.ClientSession() as session, session.get(gateway.url(FAULT_PATH)) as response:
        assert response.status == 500
        assert response.content_type == "application/json"
        text = await response.text()
        answer = await response.json()
    assert answer["error"]["code"] == "internal_error"
    assert response.headers["x-request-id"] in answer["error"]["message"]
    assert SECRET not in text


def test_fault_points_are_off_without_the_variable(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url)}))
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "user": FAULT_USER}
    with gateway.client() as client:
        answer = client.chat.completions.create(**body)  # type: ignore[call-overload]
    assert answer.choices[0].message.content
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(gateway.url(FAULT_PATH))
        status = 200
    except urllib.error.HTTPError as exc:
        status = exc.code
    assert status == 404

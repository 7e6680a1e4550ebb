"""Guardrails through a real gateway process: the official SDKs as clients, fake providers speaking their
wire formats, a real webhook service on loopback. Input redaction as the provider receives it, blocking
in all four ingress shapes (naming the rule, never the value), a streamed answer whose card number is
split across chunks, a streamed block ending with an error event, rules scoped per virtual key, webhook
failure policies, live config edits, and log rows holding no matched value."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web
from fakes import FakeOpenAI
from fakes.reply import Reply
from fakes.server import ThreadedServer
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from harness import Gateway
from harness.config import make_config, openai_provider

CARD = "4111 1111 1111 1111"
CARD_RE = r"\b(?:\d[ -]?){15}\d\b"
MODEL = "openai/gpt-4o-mini"
VK_CHECKED = "sk-bf-guard-checked-0001"
VK_FREE = "sk-bf-guard-free-0002"


def guardrails(*, card_action: str = "redact", word_cel: str = "true", extra: list[Any] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "guardrail_providers": [
            {
                "id": 1,
                "provider_name": "regex",
                "policy_name": "cards",
                "config": {"patterns": [{"pattern": CARD_RE, "description": "card"}], "action": card_action},
            },
            {
                "id": 2,
                "provider_name": "wordlist",
                "policy_name": "codenames",
                "config": {"words": ["falcon"], "action": "block"},
            },
            *[p for p, _ in extra],
        ],
        "guardrail_rules": [
            {"id": 1, "name": "mask-cards", "cel_expression": "true", "apply_to": "both", "provider_config_ids": [1]},
            {
                "id": 2,
                "name": "no-codenames",
                "cel_expression": word_cel,
                "apply_to": "both",
                "provider_config_ids": [2],
            },
            *[r for _, r in extra],
        ],
    }


def config_with(fake: FakeOpenAI, block: dict[str, Any], **more: Any) -> dict[str, Any]:
    config = make_config({"openai": openai_provider(fake.url)})
    config["guardrails_config"] = block
    config.update(more)
    return config


def anthropic_client(gw: Gateway, api_key: str = "sk-ant-x") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url + "/anthropic", api_key=api_key, max_retries=0)


def genai_client(gw: Gateway, api_key: str = "AIza-x") -> genai.Client:
    options = types.HttpOptions(
        base_url=gw.base_url + "/genai", timeout=60_000, retry_options=types.HttpRetryOptions(attempts=1)
    )
    return genai.Client(api_key=api_key, http_options=options)


def rows_text(gw: Gateway, n: int) -> str:
    rows = gw.log.wait_rows(n)
    return json.dumps([dict(r) for r in rows], default=str)


@pytest.fixture
def guarded(start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI) -> Gateway:
    return start_gateway(config_with(fake_openai, guardrails()))


def test_input_is_redacted_before_the_provider_sees_it(guarded: Gateway, fake_openai: FakeOpenAI) -> None:
    with guarded.client() as client:
        answer = client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "system", "content": f"the customer's card is {CARD}"},
                {"role": "user", "content": [{"type": "text", "text": f"charge 5500-0000-0000-0004 and {CARD}"}]},
            ],
        )
    received = fake_openai.requests[-1]
    assert CARD not in received.raw.decode() and "5500-0000-0000-0004" not in received.raw.decode()
    messages = received.body["messages"]
    assert messages[0]["content"] == "the customer's card is [REDACTED:regex:card]"
    assert messages[1]["content"][0]["text"] == "charge [REDACTED:regex:card] and [REDACTED:regex:card]"
    # The fake echoes the (masked) user text; the answer is checked too.
    assert CARD not in (answer.choices[0].message.content or "")
    assert CARD not in rows_text(guarded, 1)


def test_whole_answer_with_a_card_is_masked_for_the_client(guarded: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(content=f"Sure: {CARD} is on file."))
    with guarded.client() as client:
        answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "which card?"}])
    assert answer.choices[0].message.content == "Sure: [REDACTED:regex:card] is on file."
    assert CARD not in rows_text(guarded, 1)


def test_blocked_in_all_four_ingress_shapes_naming_the_rule(guarded: Gateway, fake_openai: FakeOpenAI) -> None:
    text = "status of project Falcon?"
    want = "blocked by guardrail rule 'no-codenames' (codenames: wordlist)"
    with guarded.client() as client:
        with pytest.raises(openai.BadRequestError) as chat_err:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}])
        with pytest.raises(openai.BadRequestError) as resp_err:
            client.responses.create(model=MODEL, input=text)
    assert chat_err.value.status_code == 400 and resp_err.value.status_code == 400
    assert chat_err.value.body["message"] == want  # type: ignore[index]
    assert chat_err.value.body["type"] == "guardrail_blocked"  # type: ignore[index]
    assert want in json.dumps(resp_err.value.body)
    with anthropic_client(guarded) as ac, pytest.raises(anthropic.BadRequestError) as ant_err:
        ac.messages.create(model=MODEL, max_tokens=20, messages=[{"role": "user", "content": text}])
    assert ant_err.value.body["type"] == "error"  # type: ignore[index]
    assert ant_err.value.body["error"]["message"] == want  # type: ignore[index]
    with genai_client(guarded) as gc, pytest.raises(genai_errors.ClientError) as gen_err:
        gc.models.generate_content(model=MODEL, contents=text)
    assert gen_err.value.code == 400 and want in (gen_err.value.message or "")
    for err in (chat_err.value, resp_err.value, ant_err.value):
        assert "falcon" not in json.dumps(err.body).lower().replace("codenames", "")
    assert fake_openai.requests == []  # never reached the provider
    log = rows_text(guarded, 4).lower()
    assert "falcon" not in log.replace("codenames", "")  # the blocked value is scrubbed from every row
    for row in guarded.log.wait_rows(4):
        entries = json.loads(row["guardrails"])
        assert entries == [
            {
                "rule": "no-codenames",
                "provider": "codenames",
                "stage": "input",
                "action": "block",
                "types": ["wordlist"],
                "count": 1,
            }
        ]


def test_streamed_card_split_across_chunks_is_masked(guarded: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(content=f"Your card {CARD} was charged. Thanks!"))  # sent word by word
    with guarded.client() as client:
        stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
        pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
        stream.close()
    assert "".join(pieces) == "Your card [REDACTED:regex:card] was charged. Thanks!"
    assert not any("4111" in p or "1111" in p for p in pieces)
    assert CARD not in rows_text(guarded, 1)


def test_streamed_block_ends_with_an_error_event_in_openai_and_anthropic(
    guarded: Gateway, fake_openai: FakeOpenAI
) -> None:
    words = " ".join(f"w{i}" for i in range(60))
    fake_openai.enqueue(Reply(content=f"{words} the falcon lands {words}"))
    with guarded.client() as client:
        stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "go"}], stream=True)
        got: list[str] = []
        with pytest.raises(openai.APIError) as err:
            for c in stream:
                got.extend(c.choices[0].delta.content or "" for _ in [0] if c.choices)
        stream.close()
    assert "no-codenames" in str(err.value) and "falcon" not in "".join(got)
    fake_openai.enqueue(Reply(content=f"{words} the falcon lands {words}"))
    go = [{"role": "user", "content": "go"}]
    with (
        anthropic_client(guarded) as ac,
        pytest.raises(anthropic.APIStatusError) as ant_err,
        ac.messages.stream(model=MODEL, max_tokens=50, messages=go) as s,  # type: ignore[arg-type]
    ):
        for _ in s.text_stream:
            pass
    assert "no-codenames" in str(ant_err.value)


def test_rules_scoped_per_virtual_key(start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI) -> None:
    block = guardrails(word_cel="request.virtual_key == 'vk-checked'")
    governance = {
        "virtual_keys": [
            {"id": "vk-checked", "name": "checked", "value": VK_CHECKED},
            {"id": "vk-free", "name": "free", "value": VK_FREE},
        ]
    }
    gw = start_gateway(config_with(fake_openai, block, governance=governance))
    message = [{"role": "user", "content": "falcon status"}]
    with gw.client(api_key=VK_FREE) as client:
        assert client.chat.completions.create(model=MODEL, messages=message).choices  # type: ignore[arg-type]
    with gw.client(api_key=VK_CHECKED) as client, pytest.raises(openai.BadRequestError, match="no-codenames"):
        client.chat.completions.create(model=MODEL, messages=message)  # type: ignore[arg-type]
    assert len(fake_openai.requests) == 1


def test_flagged_value_reaches_the_provider_but_not_the_log(
    start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI
) -> None:
    gw = start_gateway(config_with(fake_openai, guardrails(card_action="flag")))
    with gw.client() as client:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"card {CARD}"}])
    assert CARD in fake_openai.requests[-1].raw.decode()  # flag: recorded only
    log = rows_text(gw, 1)
    assert CARD not in log and "[REDACTED]" in log


# -- the webhook: timeouts and failure policies ---------------------------------------------------------


@pytest.fixture
def slow_hook() -> Iterator[str]:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(3.0)
        return web.json_response({"verdict": "allow"})

    def app() -> web.Application:
        application = web.Application()
        application.router.add_post("/verdict", handle)
        return application

    server = ThreadedServer(app)
    server.start()
    try:
        yield server.url + "/verdict"
    finally:
        server.stop()


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
def test_webhook_timeout_follows_its_failure_policy(
    start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI, slow_hook: str, policy: str
) -> None:
    hook = (
        {
            "id": 3,
            "provider_name": "webhook",
            "policy_name": "slow-hook",
            "timeout": 0.3,
            "config": {"url": slow_hook, "action": "block", "failure_policy": policy},
        },
        {"id": 3, "name": "ask-hook", "cel_expression": "true", "apply_to": "input", "provider_config_ids": [3]},
    )
    gw = start_gateway(config_with(fake_openai, guardrails(extra=[hook])))
    with gw.client() as client:
        if policy == "fail_open":
            assert client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}]).choices
            assert len(fake_openai.requests) == 1
        else:
            with pytest.raises(openai.APIStatusError) as err:
                client.with_options(max_retries=0).chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "hi"}]
                )
            assert err.value.status_code == 503 and "ask-hook" in str(err.value)
            assert fake_openai.requests == []


def test_live_config_edit_turns_guardrails_on_and_off(
    start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI
) -> None:
    plain = make_config({"openai": openai_provider(fake_openai.url)})
    gw = start_gateway(plain)
    message = [{"role": "user", "content": f"card {CARD}"}]

    def received_after_edit(config: dict[str, Any], want_card: bool) -> None:
        (gw.app_dir / "config.json").write_text(json.dumps(config))
        deadline = time.monotonic() + 20
        while True:
            with gw.client() as client:
                client.chat.completions.create(model=MODEL, messages=message)  # type: ignore[arg-type]
            if (CARD in fake_openai.requests[-1].raw.decode()) == want_card or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert (CARD in fake_openai.requests[-1].raw.decode()) == want_card

    with gw.client() as client:
        client.chat.completions.create(model=MODEL, messages=message)  # type: ignore[arg-type]
    assert CARD in fake_openai.requests[-1].raw.decode()
    received_after_edit({**plain, "guardrails_config": guardrails()}, want_card=False)
    received_after_edit(plain, want_card=True)


def test_streamed_card_is_masked_for_anthropic_responses_and_completions_clients(
    guarded: Gateway, fake_openai: FakeOpenAI
) -> None:
    reply = Reply(content=f"Card {CARD} noted. Bye")
    want = "Card [REDACTED:regex:card] noted. Bye"
    fake_openai.enqueue(reply)
    go = [{"role": "user", "content": "go"}]
    with anthropic_client(guarded) as ac, ac.messages.stream(model=MODEL, max_tokens=50, messages=go) as s:  # type: ignore[arg-type]
        assert "".join(s.text_stream) == want
    fake_openai.enqueue(reply)
    with guarded.client() as client:
        events = client.responses.create(model=MODEL, input="go", stream=True)
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        events.close()
        assert text == want
        fake_openai.enqueue(reply)
        completion = client.completions.create(model="openai/gpt-3.5-turbo-instruct", prompt="go", stream=True)
        assert "".join(c.choices[0].text for c in completion if c.choices) == want
        completion.close()
    assert CARD not in rows_text(guarded, 3)


def test_whole_answer_with_a_blocked_word_is_refused_naming_the_rule(guarded: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(content="the falcon has landed"))
    with guarded.client() as client, pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "status?"}])
    assert err.value.body["message"] == "blocked by guardrail rule 'no-codenames' (codenames: wordlist)"  # type: ignore[index]
    assert len(fake_openai.requests) == 1  # the answer was generated, then refused
    row = guarded.log.wait_rows(1)[0]
    assert "falcon" not in json.dumps(dict(row), default=str).replace("codenames", "")
    assert json.loads(row["guardrails"])[0]["stage"] == "output"


def test_live_added_rule_runs_after_governance_so_it_sees_the_virtual_key(
    start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI
) -> None:
    governance = {
        "virtual_keys": [
            {"id": "vk-checked", "name": "checked", "value": VK_CHECKED},
            {"id": "vk-free", "name": "free", "value": VK_FREE},
        ]
    }
    plain = {**make_config({"openai": openai_provider(fake_openai.url)}), "governance": governance}
    gw = start_gateway(plain)
    message = [{"role": "user", "content": "falcon status"}]
    edited = {**plain, "guardrails_config": guardrails(word_cel="request.virtual_key == 'vk-checked'")}
    (gw.app_dir / "config.json").write_text(json.dumps(edited))
    deadline = time.monotonic() + 20
    blocked = False
    with gw.client(api_key=VK_CHECKED) as client:
        while not blocked and time.monotonic() < deadline:
            try:
                client.chat.completions.create(model=MODEL, messages=message)  # type: ignore[arg-type]
                time.sleep(0.3)
            except openai.BadRequestError as err:
                blocked = "no-codenames" in err.message
    assert blocked
    with gw.client(api_key=VK_FREE) as client:
        assert client.chat.completions.create(model=MODEL, messages=message).choices  # type: ignore[arg-type]

"""The issue's example `guardrails_config`, as written, in config.json of a real gateway: cards and e-mails
masked both ways (a streamed card split across chunks included), credentials refused only when the request
goes to openai (a CEL rule on the routed provider), and the log row naming the rules that acted without
any matched value."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest
from fakes import FakeOpenAI
from fakes.reply import Reply
from harness import Gateway
from harness.config import custom_provider, make_config, openai_provider
from harness.guardrails_example import issue_example

CARD = "4111 1111 1111 1111"
EMAIL = "jane.doe@example.com"


def example(*, with_secrets: bool = True) -> dict[str, Any]:
    block = issue_example()
    if not with_secrets:
        block["guardrail_providers"] = block["guardrail_providers"][:1]
        block["guardrail_rules"] = block["guardrail_rules"][:1]
    return block


def start(start_gateway: Callable[..., Gateway], fake: FakeOpenAI, other: FakeOpenAI, block: dict[str, Any]) -> Gateway:
    config = make_config(
        {"openai": openai_provider(fake.url), "elsewhere": custom_provider(other.url, keys=("sk-fake-2",))}
    )
    config["guardrails_config"] = block
    return start_gateway(config)


def logged(gw: Gateway, n: int) -> list[dict[str, Any]]:
    return [dict(r) for r in gw.log.wait_rows(n)]


def test_pii_masked_both_ways_and_in_streams(
    start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    gw = start(start_gateway, fake_openai, fake_openai_2, example(with_secrets=False))
    with gw.client() as client:
        answer = client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": f"card {CARD}, mail {EMAIL}"}]
        )
        sent = fake_openai.requests[-1].body["messages"][0]["content"]
        assert sent == "card [REDACTED:credit_card], mail [REDACTED:email]"
        assert CARD not in (answer.choices[0].message.content or "")
        fake_openai.enqueue(Reply(content=f"On file: {CARD} and {EMAIL}, thanks"))
        stream = client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "which card?"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        stream.close()
    assert text == "On file: [REDACTED:credit_card] and [REDACTED:email], thanks"
    rows = logged(gw, 2)
    dump = json.dumps(rows, default=str)
    assert CARD not in dump and EMAIL not in dump
    fired = [json.loads(r["guardrails"]) for r in rows if r.get("guardrails")]
    stages = {(f["rule"], f["stage"], f["action"]) for entries in fired for f in entries}
    assert ("mask-pii", "input", "redact") in stages and ("mask-pii", "output", "redact") in stages


def test_the_issue_example_as_written(
    start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    pytest.importorskip("runtime.guardrails.detectors.secrets")  # h15-detect's detector
    gw = start(start_gateway, fake_openai, fake_openai_2, example())
    key = "AKIA" + "Q3EGRIXZ7YB5NC2W"  # an AWS access key id shape (made up)
    prompt = [{"role": "user", "content": f"deploy with {key} and bill {CARD}"}]
    with gw.client() as client:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=prompt)  # type: ignore[arg-type]
        assert "no-keys-to-openai" in err.value.message and key not in json.dumps(err.value.body)
        assert fake_openai.requests == []
        # The same prompt to another provider: not refused; the card is still masked.
        client.chat.completions.create(model="elsewhere/gpt-4o-mini", messages=prompt)  # type: ignore[arg-type]
    seen = fake_openai_2.requests[-1].body["messages"][0]["content"]
    assert key in seen and CARD not in seen
    rows = logged(gw, 2)
    assert CARD not in json.dumps(rows, default=str)
    blocked = next(r for r in rows if r["status"] == 400)
    assert key not in json.dumps(blocked, default=str)
    assert any(f["rule"] == "no-keys-to-openai" and f["action"] == "block" for f in json.loads(blocked["guardrails"]))


def test_a_provider_rule_covers_every_target_the_request_may_reach(
    start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    """`request.provider == 'openai'` holds for a request whose fallback, or a model group's other target,
    is openai: the key must not reach openai by a failover or the next weighted turn. And evaluating it does
    not advance the group's weighted round-robin: clean requests still alternate 1:1."""
    config = make_config(
        {
            "openai": openai_provider(fake_openai.url),
            "elsewhere": custom_provider(fake_openai_2.url, keys=("sk-fake-2",)),
        }
    )
    config["guardrails_config"] = example()
    config["model_groups"] = {
        "mix": {
            "targets": [{"model": "openai/gpt-4o-mini", "weight": 1}, {"model": "elsewhere/gpt-4o-mini", "weight": 1}]
        }
    }
    gw = start_gateway(config, args=("--workers", "1"))
    key = "AKIA" + "Q3EGRIXZ7YB5NC2W"
    secret = [{"role": "user", "content": f"deploy with {key}"}]
    with gw.client() as client:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(
                model="elsewhere/gpt-4o-mini",
                messages=secret,  # type: ignore[arg-type]
                extra_body={"fallbacks": ["openai/gpt-4o-mini"]},
            )
        assert "no-keys-to-openai" in err.value.message
        for _ in range(2):
            with pytest.raises(openai.BadRequestError):
                client.chat.completions.create(model="mix", messages=secret)  # type: ignore[arg-type]
        assert fake_openai.requests == [] and fake_openai_2.requests == []
        for _ in range(4):
            client.chat.completions.create(model="mix", messages=[{"role": "user", "content": "hello"}])
    assert (len(fake_openai.requests), len(fake_openai_2.requests)) == (2, 2)

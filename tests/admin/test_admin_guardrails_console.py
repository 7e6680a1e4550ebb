"""Issue 15 item 5, the test console's route: POST /api/guardrails/test runs pasted text through the saved
rules or an unsaved draft (runtime.guardrails.engine.try_text) against a real gateway process. The
validation tests need nothing else; the ones that run detectors skip, naming the module, until the
engine's and the detectors' branches are merged."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from fakes import FakeOpenAI
from fakes.base import FakeProvider, Handler
from fakes.recorder import RecordedRequest
from fakes.reply import Reply
from harness import Gateway, StartGateway, make_config, openai_provider

from .conftest import Api, read_config
from .test_admin_guardrails import EXAMPLE, need

CARD = "4111 1111 1111 1111"
ORDER = "ORDER-482913"
ENGINE = ("runtime.guardrails.engine", "runtime.guardrails.detectors.pii", "runtime.guardrails.detectors.regex")
# The example with its second provider a regex (an order id) instead of the secrets detector: the
# console runs whatever kinds are configured; the example itself is tested in test_admin_guardrails.py.
CONSOLE: dict[str, Any] = copy.deepcopy(EXAMPLE)
CONSOLE["guardrail_providers"][1] = {
    "id": 2,
    "provider_name": "regex",
    "policy_name": "no-order-ids",
    "config": {"patterns": [{"pattern": "ORDER-\\d{6}", "description": "order-id"}], "action": "block"},
}
CONSOLE["guardrail_rules"][1]["name"] = "no-orders-to-openai"


def test_console_input_is_checked_before_anything_runs(api: Api) -> None:
    got = api.post("/api/guardrails/test", {"text": "x" * (256 * 1024 + 1)})
    assert got.status == 413 and got.body["error"]["param"] == "text", got.text
    got = api.post("/api/guardrails/test", {"stage": "input"})
    assert got.status == 400 and got.body["error"]["param"] == "text"
    got = api.post("/api/guardrails/test", {"text": "hi", "stage": "both"})
    assert got.status == 400 and got.body["error"]["param"] == "stage"
    got = api.post("/api/guardrails/test", {"text": "hi", "request": {"provder": "openai"}})
    assert got.status == 400 and "request.provder" in got.body["error"]["message"]
    got = api.post("/api/guardrails/test", {"text": "hi", "request": {"model": 3}})
    assert got.status == 400 and got.body["error"]["param"] == "request.model"
    got = api.post("/api/guardrails/test", {"text": "hi", "verbose": True})
    assert got.status == 400 and got.body["error"]["param"] == "verbose"
    # A body far larger than any text allowed is refused before it is read.
    got = api.post("/api/guardrails/test", {"text": "y" * (2 * 1024 * 1024)})
    assert got.status == 413


def test_a_draft_with_a_bad_cel_expression_names_its_field_and_saves_nothing(api: Api, admin_gateway: Gateway) -> None:
    before = read_config(admin_gateway)
    rule = {"id": 1, "name": "r", "cel_expression": "request.model ==", "provider_config_ids": []}
    draft = {"guardrail_rules": [rule]}
    got = api.post("/api/guardrails/test", {"text": "hi", "guardrails_config": draft})
    assert got.status == 400, got.text
    assert got.body["error"]["param"] == "guardrails_config.guardrail_rules[0].cel_expression"
    assert read_config(admin_gateway) == before


def test_console_runs_the_saved_rules(api: Api) -> None:
    need(*ENGINE)
    saved = api.put("/api/guardrails", {"guardrails_config": CONSOLE})
    assert saved.status == 200, saved.text
    got = api.post("/api/guardrails/test", {"text": f"card {CARD} and ann@example.com", "stage": "output"})
    assert got.status == 200, got.text
    result = got.body
    assert result["draft"] is False and result["stage"] == "output" and result["blocked"] is False
    assert CARD not in got.text and "ann@example.com" not in got.text  # never the matched value
    assert "[REDACTED:credit_card]" in result["text"] and "[REDACTED:email]" in result["text"]
    assert [f["rule"] for f in result["fired"]] == ["mask-pii"]
    assert result["fired"][0]["action"] == "redact"
    assert {"credit_card", "email"} <= {f["type"] for f in result["findings"]}
    # The second rule is scoped by CEL to requests going to openai: the console's request fields decide.
    text = f"about {ORDER}"
    got = api.post("/api/guardrails/test", {"text": text, "request": {"provider": "anthropic"}})
    assert got.status == 200 and got.body["blocked"] is False, got.text
    got = api.post("/api/guardrails/test", {"text": text, "request": {"provider": "openai", "model": "gpt-4o"}})
    assert got.status == 200, got.text
    assert got.body["blocked"] is True and got.body["text"] is None
    assert "no-orders-to-openai" in [f["rule"] for f in got.body["fired"]]
    assert ORDER not in got.text


def test_console_runs_an_unsaved_draft(api: Api, admin_gateway: Gateway) -> None:
    need(*ENGINE)
    draft: dict[str, Any] = copy.deepcopy(CONSOLE)
    draft["guardrail_providers"][0]["config"]["action"] = "block"
    got = api.post("/api/guardrails/test", {"text": f"pay with {CARD}", "guardrails_config": draft})
    assert got.status == 200, got.text
    assert got.body["draft"] is True and got.body["blocked"] is True and CARD not in got.text
    assert "guardrails_config" not in read_config(admin_gateway)  # a draft is never saved
    # Nothing saved: the same text passes the (empty) saved configuration untouched.
    got = api.post("/api/guardrails/test", {"text": f"pay with {CARD}"})
    assert got.status == 200 and got.body["blocked"] is False and got.body["fired"] == []


class FakeGuardService(FakeProvider):
    """An operator's guardrail service: records what it is sent, answers "block" for text with "forbidden"."""

    name = "guard-service"

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        async def check(request: web.Request, rec: RecordedRequest, reply: Reply) -> web.Response:
            texts = rec.body.get("texts", []) if isinstance(rec.body, dict) else []
            verdict = "block" if any("forbidden" in t for t in texts) else "allow"
            return web.json_response({"verdict": verdict, "reason": "house-rules"})

        return [("POST", "/check", check)]


def test_webhook_secrets_are_masked_and_a_draft_from_the_view_still_sends_them(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    need("runtime.guardrails.engine", "runtime.guardrails.remote.webhook")
    token, password = "Bearer hook-token-0123456789", "pw-9876543210"
    with FakeGuardService() as hook:
        host = hook.url.split("://", 1)[1]
        webhook = {
            "id": 1,
            "provider_name": "webhook",
            "policy_name": "house",
            "config": {
                "url": f"http://guard:{password}@{host}/check",
                "headers": {"X-Guard-Token": token, "X-Team": "env.HOOK_TEAM"},
                "action": "block",
            },
        }
        block = {
            "guardrail_providers": [webhook],
            "guardrail_rules": [{"id": 1, "name": "house-rules", "cel_expression": "true", "provider_config_ids": [1]}],
        }
        config = {**make_config({"openai": openai_provider(fake_openai.url)}), "guardrails_config": block}
        gw = start_gateway(config, env={"HOOK_TEAM": "team-secret-value"})
        api = Api(gw.base_url)
        shown = api.get("/api/guardrails")
        assert shown.status == 200, shown.text
        for secret in (token, password, "team-secret-value"):
            assert secret not in shown.text
        cfg = shown.body["guardrails_config"]["guardrail_providers"][0]["config"]
        assert cfg["headers"] == {"X-Guard-Token": "••••", "X-Team": "env.HOOK_TEAM"}
        assert cfg["url"] == f"http://guard:••••@{host}/check"

        # The console tries the view as a draft (what the UI sends): the masks become the stored values.
        draft = shown.body["guardrails_config"]
        got = api.post("/api/guardrails/test", {"text": "a forbidden thing", "guardrails_config": draft})
        assert got.status == 200, got.text
        assert got.body["blocked"] is True and got.body["fired"][0]["rule"] == "house-rules"
        sent = hook.requests[-1]
        assert sent.headers["x-guard-token"] == token and sent.headers["x-team"] == "team-secret-value"
        assert base64.b64decode(sent.headers["authorization"].removeprefix("Basic ")).decode() == f"guard:{password}"
        assert "••••" not in json.dumps(sent.headers)
        # The saved one too, and a PUT of the view writes the stored values back, never the masks.
        got = api.post("/api/guardrails/test", {"text": "all fine"})
        assert got.status == 200 and got.body["blocked"] is False, got.text
        assert api.put("/api/guardrails", {"guardrails_config": draft}).status == 200
        stored = read_config(gw)["guardrails_config"]["guardrail_providers"][0]["config"]
        assert stored == webhook["config"]

"""Issue 15 item 5, the test console's route: POST /api/guardrails/test runs pasted text through the saved
rules or an unsaved draft (runtime.guardrails.engine.try_text) against a real gateway process. The
validation tests need nothing else; the ones that run detectors skip, naming the module, until the
engine's and the detectors' branches are merged."""

from __future__ import annotations

import copy
from typing import Any

from harness import Gateway

from .conftest import Api, read_config
from .test_admin_guardrails import EXAMPLE, need

CARD = "4111 1111 1111 1111"
KEY = "AKIAIOSFODNN7EXAMPLE"
ENGINE = ("runtime.guardrails.engine", "runtime.guardrails.detectors.pii", "runtime.guardrails.detectors.secrets")


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
    assert api.put("/api/guardrails", {"guardrails_config": EXAMPLE}).status == 200
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
    text = f"my key {KEY}"
    got = api.post("/api/guardrails/test", {"text": text, "request": {"provider": "anthropic"}})
    assert got.status == 200 and got.body["blocked"] is False, got.text
    got = api.post("/api/guardrails/test", {"text": text, "request": {"provider": "openai", "model": "gpt-4o"}})
    assert got.status == 200, got.text
    assert got.body["blocked"] is True and got.body["text"] is None
    assert "no-keys-to-openai" in [f["rule"] for f in got.body["fired"]]
    assert KEY not in got.text


def test_console_runs_an_unsaved_draft(api: Api, admin_gateway: Gateway) -> None:
    need(*ENGINE)
    draft: dict[str, Any] = copy.deepcopy(EXAMPLE)
    draft["guardrail_providers"][0]["config"]["action"] = "block"
    got = api.post("/api/guardrails/test", {"text": f"pay with {CARD}", "guardrails_config": draft})
    assert got.status == 200, got.text
    assert got.body["draft"] is True and got.body["blocked"] is True and CARD not in got.text
    assert "guardrails_config" not in read_config(admin_gateway)  # a draft is never saved
    # Nothing saved: the same text passes the (empty) saved configuration untouched.
    got = api.post("/api/guardrails/test", {"text": f"pay with {CARD}"})
    assert got.status == 200 and got.body["blocked"] is False and got.body["fired"] == []

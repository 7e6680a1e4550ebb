"""/api/governance/virtual-keys on a real gateway: create (value shown once, stored as a digest), use at
once, disable, rotate, delete — each live, without a restart — and bad input answered with its path."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import openai
from fakes import FakeOpenAI
from harness import Gateway

from .test_vk_gateway import ENV, MESSAGES, VK, governed_config

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
BASE = "/api/governance/virtual-keys"


def call(gw: Gateway, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(gw.base_url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read() or b"null")


def status_with(gw: Gateway, api_key: str, model: str = "openai/gpt-4o-mini") -> int:
    with gw.client(api_key=api_key) as client:
        try:
            client.chat.completions.create(model=model, messages=MESSAGES)  # type: ignore[arg-type]
        except openai.APIStatusError as err:
            return err.status_code
    return 200


def test_virtual_key_lifecycle_is_live_and_the_value_is_shown_once(
    start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI
) -> None:
    gw = start_gateway(governed_config(fake_openai.url, enforce_auth_on_inference=True), env=ENV)
    status, created = call(
        gw,
        "POST",
        BASE,
        {
            "name": "made by api",
            "team_id": "team-a",
            "provider_configs": [{"provider": "openai", "allowed_models": ["gpt-4o-mini"]}],
        },
    )
    assert status == 201, created
    vk = created["virtual_key"]
    value, vk_id = vk["value"], vk["id"]
    assert value.startswith("sk-bf-") and len(value) > 40
    stored = (gw.app_dir / "config.json").read_text()
    assert value not in stored and "value_sha256" in stored  # the file holds its digest only

    assert status_with(gw, value) == 200  # usable at once
    assert status_with(gw, value, "openai/gpt-4o") == 403  # with its allow-list
    status, listed = call(gw, "GET", BASE)
    assert status == 200 and listed["count"] == 5
    assert value not in json.dumps(listed) and all(
        "value" not in k and "value_sha256" not in k for k in listed["virtual_keys"]
    )
    status, one = call(gw, "GET", f"{BASE}/{vk_id}")
    assert status == 200 and one["virtual_key"]["name"] == "made by api" and "value" not in one["virtual_key"]

    assert call(gw, "PUT", f"{BASE}/{vk_id}", {"is_active": False})[0] == 200
    assert status_with(gw, value) == 403
    assert call(gw, "PUT", f"{BASE}/{vk_id}", {"is_active": True})[0] == 200
    status, rotated = call(gw, "POST", f"{BASE}/{vk_id}/rotate")
    assert status == 200
    new_value = rotated["virtual_key"]["value"]
    assert new_value != value
    assert status_with(gw, value) == 401  # the old value stops at once
    assert status_with(gw, new_value) == 200
    assert call(gw, "DELETE", f"{BASE}/{vk_id}")[0] == 200
    assert status_with(gw, new_value) == 401
    assert status_with(gw, VK) == 200  # the config's own keys are untouched


def test_bad_input_is_refused_with_its_path(start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(governed_config(fake_openai.url), env=ENV)
    status, body = call(gw, "POST", BASE, {"name": "x", "value": "sk-bf-chosen-by-client"})
    assert status == 400 and body["error"]["param"] == "value"
    status, body = call(gw, "POST", BASE, {"name": "x", "team_id": "no-such-team"})
    assert status == 400 and body["error"]["param"] == "governance.virtual_keys[4].team_id", body
    assert call(gw, "GET", f"{BASE}/missing")[0] == 404
    assert call(gw, "POST", f"{BASE}/missing/rotate")[0] == 404
    status, body = call(gw, "PUT", f"{BASE}/vk-a", {"is_active": "no"})
    assert status == 400 and body["error"]["param"] == "governance.virtual_keys[0].is_active"

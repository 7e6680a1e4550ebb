"""Issue 9 item 12: the admin API answers bad input with 400, never 500, and its credentials end.

- numeric filters of /api/logs* (`since=inf`, `offset=1e30`, `last=1e300`, `limit=-1`, `nan`) are a 400
  naming the parameter;
- a lone surrogate (or invalid UTF-8) in any admin JSON body is a 400 and leaves no temp file;
- the admin token is accepted as `?token=` on /ws only;
- signing out revokes the session server-side, in every worker (`--workers 2`).
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from fakes import FakeOpenAI
from harness import Gateway, StartGateway, make_config, openai_provider

TOKEN = "a-configured-admin-token-0123456789"


def call(
    gw: Gateway, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})} if data is not None else dict(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, parsed
    finally:
        conn.close()


@pytest.fixture
def gw(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> Gateway:
    return start_gateway(make_config({"openai": openai_provider(fake_openai.url)}))


def _exposed(start_gateway: StartGateway, fake_openai: FakeOpenAI, *args: str) -> Gateway:
    config = make_config({"openai": openai_provider(fake_openai.url)})
    config["admin"] = {"token": "env.BIFROST_TEST_ADMIN_TOKEN"}
    return start_gateway(config, args=("--host", "0.0.0.0", *args), env={"BIFROST_TEST_ADMIN_TOKEN": TOKEN})


BAD_NUMBERS = [
    ("since", "inf"),
    ("since", "-inf"),
    ("since", "nan"),
    ("until", "1e300"),
    ("offset", "1e30"),
    ("offset", "Infinity"),
    ("last", "1e300"),
    ("last", "inf"),
    ("limit", "-1"),
    ("limit", "1e30"),
    ("min_latency_ms", "1e300"),
    ("max_latency_ms", "nan"),
    ("status", "²"),
    ("status", "99999999999999999999999"),
]


def test_numeric_log_filters_are_400_naming_the_parameter(gw: Gateway) -> None:
    assert call(gw, "POST", "/v1/chat/completions", {"model": "openai/gpt-4o-mini", "messages": []})[0] in (200, 400)
    deadline = time.monotonic() + 20
    while call(gw, "GET", "/api/logs")[2]["total"] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)  # the log is written in batches
    for path in ("/api/logs", "/api/logs/stats", "/api/logs/histogram"):
        for param, value in BAD_NUMBERS:
            if path != "/api/logs" and param in ("offset", "limit"):
                continue  # paging is the list's only
            status, _, body = call(gw, "GET", f"{path}?{param}={quote(value)}")
            assert status == 400, (path, param, value, body)
            assert body["error"]["param"] == param and param in body["error"]["message"], body
    for value in ("²", "1e3", "-5", "٣"):
        status, _, body = call(gw, "GET", f"/api/logs/histogram?buckets={quote(value)}")
        assert status == 400 and body["error"]["param"] == "buckets", (value, body)
    assert call(gw, "GET", "/api/logs?since=0&offset=5&limit=10&last=3600")[0] == 200


def _strays(app_dir: Path) -> list[str]:
    return sorted(p.name for p in app_dir.iterdir() if p.name.endswith(".tmp"))


SURROGATE_KEY = (
    b'{"name": "local", "custom_provider_config": {"base_provider_type": "openai"},'
    b' "network_config": {"base_url": "http://127.0.0.1:9"}, "keys": [{"name": "k", "value": "sk-\\ud800"}]}'
)


def test_lone_surrogate_or_bad_utf8_in_admin_bodies_is_400_and_leaves_nothing(gw: Gateway) -> None:
    before = (gw.app_dir / "config.json").read_bytes()
    cases = [
        ("POST", "/api/providers", SURROGATE_KEY, "keys[0].value"),
        ("POST", "/api/providers", SURROGATE_KEY.replace(b'"local"', b'"loc\\udfffal"'), "name"),
        ("PUT", "/api/providers/openai", b'{"keys": [{"name": "k", "value": "\\udc00x"}]}', "keys[0].value"),
        ("PUT", "/api/client", b'{"log_retention_days": 3, "\\ud83d": 1}', None),
        ("POST", "/api/providers/openai/test", b'{"prompt": "\\ud800"}', "prompt"),
        ("POST", "/api/session", b'{"token": "\\ud800"}', "token"),
        ("POST", "/api/providers", b'{"name": "x\xff\xfe"}', None),
    ]
    for method, path, raw, param in cases:
        status, _, body = call(gw, method, path, raw)
        assert status == 400, (path, raw, body)
        assert body["error"]["type"] == "invalid_request_error"
        if param is not None:
            assert body["error"]["param"] == param, body
    assert _strays(gw.app_dir) == []
    assert (gw.app_dir / "config.json").read_bytes() == before
    status, _, body = call(gw, "GET", "/api/providers")
    assert status == 200 and "local" not in {p["name"] for p in body["providers"]}


def test_token_in_the_url_only_on_the_websocket(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gw = _exposed(start_gateway, fake_openai)
    for path in ("/api/providers", "/api/logs", "/api/config", "/"):
        status, _, _ = call(gw, "GET", f"{path}?token={TOKEN}")
        assert status == 401, path
    assert call(gw, "GET", "/api/providers", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200


async def test_token_in_the_url_still_opens_the_websocket(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gw = _exposed(start_gateway, fake_openai)
    async with aiohttp.ClientSession() as session, session.ws_connect(gw.url(f"/ws?token={TOKEN}")) as ws:
        hello = await ws.receive_json(timeout=10)
        assert hello["type"] == "hello"


def test_sign_out_revokes_the_session_in_every_worker(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gw = _exposed(start_gateway, fake_openai, "--workers", "2")
    status, headers, _ = call(gw, "POST", "/api/session", {"token": TOKEN})
    assert status == 200
    cookie = headers["set-cookie"].split(";", 1)[0]
    assert cookie.startswith("bifrost_admin=") and TOKEN not in cookie, "the cookie must not be the token itself"
    with_cookie = {"Cookie": cookie}
    pids = set()
    for _ in range(40):
        status, _, body = call(gw, "GET", "/api/system", headers=with_cookie)
        assert status == 200
        pids.add(body["pid"])
    assert len(pids) == 2, "both workers accepted the session"

    status, _, _ = call(gw, "DELETE", "/api/session", headers=with_cookie)
    assert status == 200
    seen = set()
    for _ in range(40):
        assert call(gw, "GET", "/api/system", headers=with_cookie)[0] == 401
        assert call(gw, "GET", "/", headers=with_cookie)[0] == 401
        seen.add(call(gw, "GET", "/health")[2]["pid"])
    assert seen == pids, "both workers were asked after the sign-out"
    # The token itself still works, and signing in again gives a new, working session.
    assert call(gw, "GET", "/api/system", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    status, headers, _ = call(gw, "POST", "/api/session", {"token": TOKEN})
    again = headers["set-cookie"].split(";", 1)[0]
    assert again != cookie and call(gw, "GET", "/api/system", headers={"Cookie": again})[0] == 200


# -- issue 9 item 17: a GET then PUT of a provider changes nothing --------------------------------------
CLOSED = "http://127.0.0.1:9"  # nothing listens: GET and PUT never reach a provider


def every_kind_config() -> dict[str, Any]:
    """One provider of every kind the native tests use (tests/native/native_helpers.py shapes), each
    with the fields the view does not show: credential blocks, extra key fields, default_max_tokens."""
    from fakes.native.vertex_fake import make_service_account

    service_account, _ = make_service_account(CLOSED + "/token")
    net = {"base_url": CLOSED, "default_request_timeout_in_seconds": 20, "max_retries": 1}

    def simple(name: str, value: str, **extra: Any) -> dict[str, Any]:
        return {"keys": [{"name": name, "value": value, "models": [], "weight": 1, **extra}], "network_config": net}

    anthropic = simple("ant", "sk-ant-fake-1", anthropic_beta="tools-2024-04-04")
    anthropic["default_max_tokens"] = 2048
    openai = openai_provider(CLOSED, keys=({"name": "k1", "value": "sk-fake-1", "models": ["gpt-4o"]},))
    openai["network_config"]["extra_headers"] = {"X-Org-Token": "hdr-secret-123456"}
    openai["concurrency_and_buffer_size"] = {"concurrency": 7, "buffer_size": 70}
    openai["models"] = ["gpt-4o", "gpt-4o-mini"]
    custom = openai_provider(CLOSED, keys=({"value": "sk-custom-secret"},))  # no name: the loader names it
    custom["custom_provider_config"] = {"base_provider_type": "openai"}
    return make_config(
        {
            "openai": openai,
            "azure": {
                "keys": [
                    {
                        "name": "azure-key",
                        "value": "azure-fake-key",
                        "models": ["gpt-4o"],
                        "weight": 1,
                        "azure_key_config": {
                            "endpoint": CLOSED,
                            "deployments": {"gpt-4o": "my-gpt4o-deploy", "token-model": "dep-2"},
                            "api_version": "2024-10-21",
                        },
                    }
                ],
                "network_config": {"default_request_timeout_in_seconds": 20},
            },
            "anthropic": anthropic,
            "gemini": simple("gem", "gemini-fake-key"),
            "vertex": simple(
                "sa",
                "",
                vertex_key_config={
                    "project_id": "fake-project",
                    "region": "us-central1",
                    "auth_credentials": json.dumps(service_account),
                },
            ),
            "bedrock": simple(
                "aws",
                "",
                bedrock_key_config={
                    "access_key": "AKIAFAKEEXAMPLE",
                    "secret_key": "fake/secret+key",
                    "session_token": "env.BIFROST_TEST_AWS_SESSION",
                    "region": "us-west-2",
                    "deployments": {"claude": "us.anthropic.claude-sonnet-4-20250514-v1:0"},
                    "arn": "arn:aws:bedrock:us-west-2:123456789012:application-inference-profile",
                },
            ),
            "cohere": simple("co", "co-fake-key"),
            "my-local": custom,
        }
    )


SECRETS = ("sk-fake-1", "hdr-secret-123456", "azure-fake-key", "sk-ant-fake-1", "gemini-fake-key", "PRIVATE KEY")
SECRETS += ("AKIAFAKEEXAMPLE", "fake/secret+key", "co-fake-key", "sk-custom-secret", "fake-session-token")


@pytest.fixture
def every_kind(start_gateway: StartGateway) -> Gateway:
    return start_gateway(every_kind_config(), env={"BIFROST_TEST_AWS_SESSION": "fake-session-token"})


def test_get_then_put_of_every_provider_kind_changes_nothing(every_kind: Gateway) -> None:
    gw = every_kind
    path = gw.app_dir / "config.json"
    before = path.read_bytes()
    names = sorted(json.loads(before)["providers"])
    for name in names:
        status, _, view = call(gw, "GET", f"/api/providers/{name}")
        assert status == 200
        text = json.dumps(view, ensure_ascii=False)
        for secret in SECRETS:
            assert secret not in text, (name, secret)
        status, _, body = call(gw, "PUT", f"/api/providers/{name}", view)
        assert status == 200, (name, body)
    assert json.loads(path.read_bytes()) == json.loads(before)
    # The list view round-trips too (what the UI holds when it opens the editor).
    _, _, listing = call(gw, "GET", "/api/providers")
    for view in listing["providers"]:
        if view["name"] in names:
            assert call(gw, "PUT", f"/api/providers/{view['name']}", view)[0] == 200
    assert json.loads(path.read_bytes()) == json.loads(before)
    assert [p for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_nested_secrets_left_out_or_masked_keep_their_stored_value(every_kind: Gateway) -> None:
    gw = every_kind
    stored = json.loads((gw.app_dir / "config.json").read_text())["providers"]
    _, _, view = call(gw, "GET", "/api/providers/bedrock")
    block = view["keys"][0]["bedrock_key_config"]
    assert block["region"] == "us-west-2" and block["session_token"] == "env.BIFROST_TEST_AWS_SESSION"
    assert block["secret_key"].startswith("••••") and block["access_key"].startswith("••••")
    del block["secret_key"]  # a client that leaves a secret out keeps it
    block["region"] = "eu-central-1"
    assert call(gw, "PUT", "/api/providers/bedrock", view)[0] == 200
    after = json.loads((gw.app_dir / "config.json").read_text())["providers"]["bedrock"]["keys"][0]
    expected = {**stored["bedrock"]["keys"][0]["bedrock_key_config"], "region": "eu-central-1"}
    assert after["bedrock_key_config"] == expected
    _, _, view = call(gw, "GET", "/api/providers/vertex")
    assert view["keys"][0]["vertex_key_config"]["auth_credentials"].startswith("••••")
    view["keys"][0]["vertex_key_config"]["region"] = "global"
    assert call(gw, "PUT", "/api/providers/vertex", view)[0] == 200
    after = json.loads((gw.app_dir / "config.json").read_text())["providers"]["vertex"]["keys"][0]
    assert (
        after["vertex_key_config"]["auth_credentials"]
        == stored["vertex"]["keys"][0]["vertex_key_config"]["auth_credentials"]
    )
    assert after["vertex_key_config"]["region"] == "global"


def test_default_max_tokens_is_accepted(every_kind: Gateway) -> None:
    _, _, view = call(every_kind, "GET", "/api/providers/anthropic")
    assert view["default_max_tokens"] == 2048
    view["default_max_tokens"] = 1024
    status, _, body = call(every_kind, "PUT", "/api/providers/anthropic", view)
    assert status == 200 and body["default_max_tokens"] == 1024, body
    stored = json.loads((every_kind.app_dir / "config.json").read_text())["providers"]["anthropic"]
    assert stored["default_max_tokens"] == 1024 and stored["keys"][0]["value"] == "sk-ant-fake-1"


# -- issue 9 item 13 (admin part): GET /api/config carries the config warnings ---------------------------
async def test_config_warnings_are_returned_by_api_config(tmp_path: Path) -> None:
    """In process: the warnings come from the config loader (GatewayConfig.warnings); here we only pin
    that the admin API passes them on, whatever they say."""
    from aiohttp.test_utils import TestClient, TestServer

    from runtime.app import create_app
    from runtime.config.load import load_gateway_config

    config = load_gateway_config(tmp_path, environ={})
    warnings = ("config.json: plugins has no effect in this gateway (Go Bifrost field, not implemented)",)
    app = create_app(dataclasses.replace(config, warnings=warnings))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.get("/api/config")
        assert resp.status == 200
        assert (await resp.json())["warnings"] == list(warnings)

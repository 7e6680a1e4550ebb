"""Issue 9 item 12: the admin API answers bad input with 400, never 500, and its credentials end.

- numeric filters of /api/logs* (`since=inf`, `offset=1e30`, `last=1e300`, `limit=-1`, `nan`) are a 400
  naming the parameter;
- a lone surrogate (or invalid UTF-8) in any admin JSON body is a 400 and leaves no temp file;
- the admin token is accepted as `?token=` on /ws only;
- signing out revokes the session server-side, in every worker (`--workers 2`).
"""

from __future__ import annotations

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

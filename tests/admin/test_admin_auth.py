"""Admin token: open on loopback; off loopback /api, /ws and the UI need it, inference does not."""

from __future__ import annotations

import hashlib
import re

import aiohttp
import pytest
from fakes import FakeOpenAI
from harness import Gateway, StartGateway, make_config, openai_provider

from .conftest import Api

TOKEN_RE = re.compile(r"^\s+([A-Za-z0-9_-]{40,})\s*$", re.MULTILINE)


def _exposed(start_gateway: StartGateway, fake_openai: FakeOpenAI, **kw: object) -> Gateway:
    # Listens on every interface; the test still only talks to 127.0.0.1.
    return start_gateway(make_config({"openai": openai_provider(fake_openai.url)}), args=("--host", "0.0.0.0"), **kw)


def test_generated_token_printed_once_and_stored_hashed(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = _exposed(start_gateway, fake_openai)
    printed = TOKEN_RE.findall(gateway.stdout_path.read_text())
    assert len(printed) == 1, gateway.output()
    token = printed[0]
    stored = (gateway.app_dir / "admin_token.sha256").read_text().strip()
    assert stored == hashlib.sha256(token.encode()).hexdigest() and token not in stored

    anonymous = Api(gateway.base_url)
    for path in ("/api/providers", "/api/logs", "/api/openapi.json"):
        denied = anonymous.get(path)
        assert denied.status == 401 and denied.body["error"]["code"] == "admin_token_required", path
    assert anonymous.get("/").status == 401  # the sign-in page
    assert anonymous.get("/api/session").body == {"auth_required": True, "authenticated": False}
    assert Api(gateway.base_url, token="wrong-token-wrong-token").get("/api/providers").status == 401
    # Inference is not the admin surface: no token needed.
    assert anonymous.chat("openai/gpt-4o-mini").status == 200

    admin = Api(gateway.base_url, token=token)
    assert admin.get("/api/providers").status == 200
    assert admin.get("/api/session").body["authenticated"] is True
    signed_in = anonymous.post("/api/session", {"token": token})
    assert signed_in.status == 200 and "bifrost_admin=" in signed_in.headers.get("Set-Cookie", "")
    assert anonymous.post("/api/session", {"token": "nope"}).status == 401

    gateway.stop()
    again = start_gateway(app_dir=gateway.app_dir, args=("--host", "0.0.0.0"))
    assert TOKEN_RE.findall(again.stdout_path.read_text()) == []  # printed once, at the first start
    assert Api(again.base_url, token=token).get("/api/providers").status == 200


def test_token_from_config(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    config = make_config({"openai": openai_provider(fake_openai.url)})
    config["admin"] = {"token": "env.BIFROST_TEST_ADMIN_TOKEN"}
    token = "a-configured-admin-token-0123456789"
    gateway = start_gateway(config, args=("--host", "0.0.0.0"), env={"BIFROST_TEST_ADMIN_TOKEN": token})
    assert not (gateway.app_dir / "admin_token.sha256").exists()
    assert Api(gateway.base_url).get("/api/providers").status == 401
    assert Api(gateway.base_url, token=token).get("/api/providers").status == 200


def test_a_configured_token_is_required_on_loopback_too(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    """Behind nginx on the same host every request comes from 127.0.0.1: a configured token still holds."""
    config = make_config({"openai": openai_provider(fake_openai.url)})
    config["admin"] = {"token": "env.BIFROST_TEST_ADMIN_TOKEN"}
    token = "a-configured-admin-token-0123456789"
    gateway = start_gateway(config, env={"BIFROST_TEST_ADMIN_TOKEN": token})  # listens on 127.0.0.1
    anonymous = Api(gateway.base_url)
    assert anonymous.get("/api/session").body == {"auth_required": True, "authenticated": False}
    assert anonymous.get("/api/providers").status == 401
    assert Api(gateway.base_url, token=token).get("/api/providers").status == 200
    assert anonymous.chat("openai/gpt-4o-mini").status == 200  # inference is not the admin surface


@pytest.mark.parametrize("use_token", [False, True])
async def test_websocket_needs_the_token(start_gateway: StartGateway, fake_openai: FakeOpenAI, use_token: bool) -> None:
    gateway = _exposed(start_gateway, fake_openai)
    token = TOKEN_RE.findall(gateway.stdout_path.read_text())[0]
    url = gateway.url("/ws") + (f"?token={token}" if use_token else "")
    async with aiohttp.ClientSession() as session:
        if use_token:
            async with session.ws_connect(url) as ws:
                assert (await ws.receive_json(timeout=10))["type"] == "hello"
        else:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await session.ws_connect(url)
            assert info.value.status == 401


def test_loopback_needs_no_token(admin_gateway: Gateway) -> None:
    api = Api(admin_gateway.base_url)
    assert api.get("/api/session").body == {"auth_required": False, "authenticated": True}
    assert not (admin_gateway.app_dir / "admin_token.sha256").exists()


def test_other_web_sites_cannot_use_the_open_loopback_api(admin_gateway: Gateway) -> None:
    api = Api(admin_gateway.base_url)
    evil = api.post("/api/providers", {"name": "x"}, headers={"Origin": "http://evil.example"})
    assert evil.status == 403 and evil.body["error"]["code"] == "cross_site_request"
    rebound = api.get("/api/providers", headers={"Host": "evil.example:8080"})  # DNS rebinding
    assert rebound.status == 403
    form = api.call("POST", "/api/providers", {"name": "x"}, headers={"Content-Type": "text/plain"})
    assert form.status == 415  # a plain HTML form cannot post JSON to us (issue 9 item 10: 415 everywhere)
    same = api.get("/api/providers", headers={"Origin": admin_gateway.base_url})
    assert same.status == 200
    assert api.get("/api/providers", headers={"Host": f"localhost:{admin_gateway.port}"}).status == 200


async def test_cross_site_websocket_refused(admin_gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(admin_gateway.url("/ws"), headers={"Origin": "http://evil.example"})
        assert info.value.status == 403

"""Issue 9 item 10: inference routes are not open to web pages on loopback.

- a `text/plain` (CORS "simple request", no preflight) POST is a 415 and never reaches the provider;
- while listening on loopback every route checks Host (DNS rebinding), in the route's error shape;
- CORS follows `client.allowed_origins`: preflights, Access-Control-Allow-Origin (streams included),
  and a state-changing request from any other origin is refused;
- the official openai SDK is unaffected.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest
from fakes import FakeOpenAI
from harness import Gateway, StartGateway, make_config, openai_provider

CHAT = "/v1/chat/completions"
BODY = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
APP = "https://app.example"
EVIL = "https://evil.example"


def call(
    gw: Gateway, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request with exactly these headers (http.client lets a test set Host itself)."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def error_of(raw: bytes) -> dict[str, Any]:
    return json.loads(raw)


@pytest.fixture
def gw(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> Gateway:
    return start_gateway(make_config({"openai": openai_provider(fake_openai.url)}))


@pytest.fixture
def cors_gw(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> Gateway:
    return start_gateway(make_config({"openai": openai_provider(fake_openai.url)}, allowed_origins=[APP]))


def test_text_plain_post_is_415_and_reaches_no_provider(gw: Gateway, fake_openai: FakeOpenAI) -> None:
    raw = json.dumps(BODY).encode()
    for content_type in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": content_type} if content_type else {}
        status, hdrs, body = call(gw, "POST", CHAT, raw, headers)
        assert status == 415, (content_type, body)
        assert error_of(body)["error"]["code"] == "unsupported_media_type"
        assert hdrs.get("x-request-id")
    # Each ingress answers in its own error shape.
    status, _, body = call(gw, "POST", "/anthropic/v1/messages", raw, {"Content-Type": "text/plain"})
    assert status == 415 and error_of(body)["type"] == "error" and "error" in error_of(body)
    status, _, body = call(
        gw, "POST", "/genai/v1beta/models/openai/gpt-4o-mini:generateContent", raw, {"Content-Type": "text/plain"}
    )
    assert status == 415 and error_of(body)["error"]["code"] == 415
    assert fake_openai.recorder.requests == [], "a non-JSON body reached the provider"
    # JSON, with or without a charset, is fine.
    for content_type in ("application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"):
        status, _, body = call(gw, "POST", CHAT, raw, {"Content-Type": content_type})
        assert status == 200, (content_type, body)


@pytest.mark.parametrize("path", ["/v1/models", "/metrics", "/health", "/api/providers", "/", "/ws"])
def test_foreign_host_is_refused_on_every_route(gw: Gateway, path: str) -> None:
    status, _, body = call(gw, "GET", path, headers={"Host": "evil.example"})
    assert status == 403, body
    assert error_of(body)["error"]["code"] == "host_not_allowed"
    status, _, _ = call(gw, "GET", path, headers={"Host": f"evil.example:{gw.port}"})
    assert status == 403


def test_foreign_host_is_refused_on_inference_posts(gw: Gateway, fake_openai: FakeOpenAI) -> None:
    json_ct = {"Content-Type": "application/json", "Host": "rebound.evil.example"}
    status, _, body = call(gw, "POST", CHAT, BODY, json_ct)
    assert status == 403 and error_of(body)["error"]["type"] == "permission_error"
    status, _, body = call(gw, "POST", "/anthropic/v1/messages", {**BODY, "max_tokens": 5}, json_ct)
    assert status == 403 and error_of(body) == {
        "type": "error",
        "error": {"type": "permission_error", "message": error_of(body)["error"]["message"]},
        "is_bifrost_error": True,
        "extra_fields": {},
    }
    assert fake_openai.recorder.requests == []


def test_loopback_hosts_are_fine(gw: Gateway) -> None:
    for host in (f"127.0.0.1:{gw.port}", f"localhost:{gw.port}", f"[::1]:{gw.port}", "localhost", "127.0.0.1"):
        status, _, body = call(gw, "GET", "/v1/models", headers={"Host": host})
        assert status == 200, (host, body)
        status, _, _ = call(gw, "GET", "/api/providers", headers={"Host": host})
        assert status == 200, host
    status, _, _ = call(gw, "POST", CHAT, BODY, {"Content-Type": "application/json", "Host": f"localhost:{gw.port}"})
    assert status == 200


def test_preflight_for_an_allowed_origin(cors_gw: Gateway) -> None:
    wanted = "authorization, content-type, x-api-key, anthropic-version, x-goog-api-key, x-bf-vk"
    for path in (CHAT, "/anthropic/v1/messages", "/genai/v1beta/models/openai/gpt-4o-mini:generateContent"):
        status, hdrs, _ = call(
            cors_gw,
            "OPTIONS",
            path,
            headers={"Origin": APP, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": wanted},
        )
        assert status == 204, path
        assert hdrs["access-control-allow-origin"] == APP
        assert "POST" in hdrs["access-control-allow-methods"]
        assert hdrs["access-control-allow-headers"] == wanted
        assert int(hdrs["access-control-max-age"]) > 0
        assert "Origin" in hdrs["vary"]


def test_preflight_for_another_origin_is_refused(cors_gw: Gateway, gw: Gateway) -> None:
    for target in (cors_gw, gw):  # listed origins elsewhere, and none at all
        status, hdrs, body = call(
            target, "OPTIONS", CHAT, headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"}
        )
        assert status == 403, body
        assert "access-control-allow-origin" not in hdrs


def test_allowed_origin_gets_acao_on_json_and_streamed_answers(cors_gw: Gateway, fake_openai: FakeOpenAI) -> None:
    headers = {"Origin": APP, "Content-Type": "application/json"}
    status, hdrs, _ = call(cors_gw, "POST", CHAT, BODY, headers)
    assert status == 200 and hdrs["access-control-allow-origin"] == APP and "Origin" in hdrs["vary"]
    status, hdrs, body = call(cors_gw, "POST", CHAT, {**BODY, "stream": True}, headers)
    assert status == 200 and hdrs["content-type"].startswith("text/event-stream")
    assert hdrs["access-control-allow-origin"] == APP
    assert b"data: [DONE]" in body
    status, hdrs, _ = call(cors_gw, "GET", "/v1/models", headers={"Origin": APP})
    assert status == 200 and hdrs["access-control-allow-origin"] == APP
    # Another origin: refused when it would change something, unreadable (no ACAO) otherwise.
    status, hdrs, _ = call(cors_gw, "POST", CHAT, BODY, {"Origin": EVIL, "Content-Type": "application/json"})
    assert status == 403 and "access-control-allow-origin" not in hdrs
    status, hdrs, _ = call(cors_gw, "GET", "/v1/models", headers={"Origin": EVIL})
    assert "access-control-allow-origin" not in hdrs


def test_without_allowed_origins_cross_origin_requests_are_refused(gw: Gateway, fake_openai: FakeOpenAI) -> None:
    status, hdrs, body = call(gw, "POST", CHAT, BODY, {"Origin": EVIL, "Content-Type": "application/json"})
    assert status == 403 and error_of(body)["error"]["code"] == "cross_site_request"
    assert "access-control-allow-origin" not in hdrs
    status, hdrs, _ = call(gw, "GET", "/v1/models", headers={"Origin": EVIL})
    assert status == 200 and "access-control-allow-origin" not in hdrs  # the browser keeps it from the page
    assert fake_openai.recorder.requests == []
    # The gateway's own pages (same origin) are not cross-origin.
    same = f"http://127.0.0.1:{gw.port}"
    status, _, _ = call(gw, "POST", CHAT, BODY, {"Origin": same, "Content-Type": "application/json"})
    assert status == 200


def test_wildcard_opens_inference_but_not_the_admin_api(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(make_config({"openai": openai_provider(fake_openai.url)}, allowed_origins=["*"]))
    status, hdrs, _ = call(gw, "POST", CHAT, BODY, {"Origin": EVIL, "Content-Type": "application/json"})
    assert status == 200 and hdrs["access-control-allow-origin"] == EVIL
    status, _, _ = call(gw, "GET", "/api/providers", headers={"Origin": EVIL})
    assert status == 403


def test_openai_sdk_is_unaffected(cors_gw: Gateway) -> None:
    with cors_gw.client() as client:
        model, messages = "openai/gpt-4o-mini", BODY["messages"]
        answer = client.chat.completions.create(model=model, messages=messages)
        assert answer.choices[0].message.content
        chunks = list(client.chat.completions.create(model=model, messages=messages, stream=True))
        assert chunks
        assert any(m.id == "openai/gpt-4o-mini" for m in client.models.list())

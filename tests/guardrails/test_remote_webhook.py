"""The webhook guardrail against a real aiohttp service on loopback: verdicts, spans, and every way the
service can fail (slow, 500, not JSON, oversized, refused), each a DetectorError naming only the detector
and the cause, never the text checked, the URL or a header value."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from runtime.config.load import ConfigError
from runtime.guardrails.remote.webhook import MAX_RESPONSE, WebhookDetector, build
from runtime.guardrails.types import DetectorError, Finding, Subject

PATH = "guardrails_config.guardrail_providers[3].config"
SECRET_HEADER = "hdr-value-0123456789"
TEXT = "my card is 4111 1111 1111 1111"


class Service:
    """A scripted webhook: `answer(body) -> web.Response` decides each reply; requests are recorded."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.answer: Callable[[dict[str, Any]], Any] = lambda body: web.json_response({"verdict": "allow"})
        self.url = ""
        self.request: web.Request | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.request = request
        body = await request.json()
        self.seen.append(body)
        self.headers.append(dict(request.headers))
        result = self.answer(body)
        if asyncio.iscoroutine(result):
            result = await result
        assert isinstance(result, web.StreamResponse)
        return result


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    svc = Service()
    app = web.Application()
    app.router.add_post("/verdict", svc.handle)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    svc.url = f"http://127.0.0.1:{port}/verdict"
    try:
        yield svc
    finally:
        await runner.cleanup()


@pytest.fixture
async def make(monkeypatch: pytest.MonkeyPatch, service: Service) -> AsyncIterator[Callable[..., WebhookDetector]]:
    monkeypatch.setenv("HOOK_TOKEN", SECRET_HEADER)
    made: list[WebhookDetector] = []

    def factory(timeout_s: float = 5.0, **config: Any) -> WebhookDetector:
        config.setdefault("url", service.url)
        config.setdefault("headers", {"Authorization": "env.HOOK_TOKEN", "X-Team": "guard"})
        detector = build(config, PATH, [], timeout_s)
        made.append(detector)
        return detector

    yield factory
    for detector in made:
        await detector.close()


def subject(*texts: str, stage: str = "input") -> Subject:
    request = {"model": "gpt-4o", "provider": "openai", "virtual_key": "vk-1", "team": "t-1", "headers": {"x": "y"}}
    return Subject(stage, list(texts), None, request)


def assert_clean(err: DetectorError, service: Service) -> None:
    message = str(err)
    assert message.startswith("webhook guardrail_providers[3]: ")
    for leaked in (TEXT, "4111", SECRET_HEADER, "user:pw", service.url, "127.0.0.1"):
        assert leaked not in message


async def test_allow_sends_the_documented_body_and_headers(
    make: Callable[..., WebhookDetector], service: Service
) -> None:
    detector = make()
    assert detector.remote and not detector.streamable and detector.kind == "webhook"
    assert await detector.check(subject("hello", "world")) == []
    assert service.seen == [{"stage": "input", "texts": ["hello", "world"], "request": {}}]
    assert service.headers[0]["Authorization"] == SECRET_HEADER  # env.NAME resolved at build
    assert service.headers[0]["X-Team"] == "guard"
    assert SECRET_HEADER not in repr(detector)


async def test_include_request_sends_ids_never_headers(make: Callable[..., WebhookDetector], service: Service) -> None:
    await make(include_request=True).check(subject("hi", stage="output"))
    sent = service.seen[0]
    assert sent["stage"] == "output"
    assert sent["request"] == {"model": "gpt-4o", "provider": "openai", "virtual_key": "vk-1", "team": "t-1"}


async def test_block_with_spans(make: Callable[..., WebhookDetector], service: Service) -> None:
    service.answer = lambda body: web.json_response(
        {
            "verdict": "block",
            "findings": [{"type": "credit_card", "part": 1, "start": 11, "end": 30, "score": 0.9}],
        }
    )
    found = await make().check(subject("intro", TEXT))
    assert found == [Finding("credit_card", 1, 11, 30, 0.9)]


async def test_verdict_without_findings_is_one_whole_part_finding_per_text(
    make: Callable[..., WebhookDetector], service: Service
) -> None:
    service.answer = lambda body: web.json_response({"verdict": "flag", "reason": "Looks like PII!! <b>"})
    found = await make().check(subject("a", "b"))
    assert found == [Finding("webhook:looks_like_pii_b", 0), Finding("webhook:looks_like_pii_b", 1)]
    assert all(f.whole for f in found)
    service.answer = lambda body: web.json_response({"verdict": "block", "reason": "x" * 500})
    (first, _second) = await make().check(subject("a", "b"))
    assert len(first.type) <= len("webhook:") + 48
    service.answer = lambda body: web.json_response({"verdict": "block"})
    assert await make().check(subject("a")) == [Finding("webhook:block", 0)]


async def test_allow_ignores_findings(make: Callable[..., WebhookDetector], service: Service) -> None:
    service.answer = lambda body: web.json_response({"verdict": "allow", "findings": [{"type": "x", "part": 0}]})
    assert await make().check(subject("a")) == []


@pytest.mark.parametrize(
    ("answer", "cause"),
    [
        (lambda b: web.Response(status=500, text=f"boom {b['texts'][0]}"), "status 500"),
        (lambda b: web.Response(status=404), "status 404"),
        (lambda b: web.Response(text="{not json", content_type="application/json"), "bad JSON"),
        (lambda b: web.json_response(["verdict"]), "bad answer (not an object)"),
        (lambda b: web.json_response({"verdict": "maybe"}), "bad answer (verdict"),
        (lambda b: web.json_response({"verdict": "block", "findings": {}}), "bad answer (findings must"),
        (
            lambda b: web.json_response(
                {"verdict": "block", "findings": [{"type": "t", "part": 0, "start": 5, "end": 999}]}
            ),
            "bad answer (findings[0])",
        ),
        (lambda b: web.json_response({"verdict": "block", "findings": [{"type": "t", "part": 7}]}), "findings[0]"),
        (lambda b: web.json_response({"verdict": "allow", "pad": "x" * (MAX_RESPONSE + 10)}), "response too large"),
    ],
)
async def test_broken_answers_are_detector_errors(
    make: Callable[..., WebhookDetector], service: Service, answer: Callable[[dict[str, Any]], Any], cause: str
) -> None:
    service.answer = answer
    with pytest.raises(DetectorError) as caught:
        await make().check(subject(TEXT))
    assert cause in str(caught.value)
    assert_clean(caught.value, service)


async def test_oversized_body_without_length_is_cut(make: Callable[..., WebhookDetector], service: Service) -> None:
    async def chunked(body: dict[str, Any]) -> web.StreamResponse:
        assert service.request is not None
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(service.request)
        for _ in range(MAX_RESPONSE // 1024 + 8):
            await response.write(b" " * 1024)
        await response.write_eof()
        return response

    service.answer = chunked
    with pytest.raises(DetectorError) as caught:
        await make().check(subject(TEXT))
    assert str(caught.value) == "webhook guardrail_providers[3]: response too large"


async def test_slow_service_times_out_within_the_bound(make: Callable[..., WebhookDetector], service: Service) -> None:
    async def slow(body: dict[str, Any]) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({"verdict": "allow"})

    service.answer = slow
    detector = make(timeout_s=0.3)
    with pytest.raises(DetectorError) as caught:
        await asyncio.wait_for(detector.check(subject(TEXT)), 10)  # bounded by the detector, not this guard
    assert str(caught.value) == "webhook guardrail_providers[3]: timeout"


async def test_refused_connection(make: Callable[..., WebhookDetector], service: Service) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DetectorError) as caught:
        await make(url=f"http://127.0.0.1:{port}/v").check(subject(TEXT))
    assert "unreachable" in str(caught.value)
    assert_clean(caught.value, service)


async def test_close_then_reuse_opens_a_new_session(make: Callable[..., WebhookDetector], service: Service) -> None:
    detector = make()
    await detector.check(subject("a"))
    await detector.close()
    await detector.close()  # idempotent
    assert await detector.check(subject("b")) == []
    assert len(service.seen) == 2


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({}, "url"),
        ({"url": "ftp://x/y"}, "url"),
        ({"url": "http://"}, "url"),
        ({"url": "http://h:99999/"}, "url"),
        ({"url": "http://h/", "headers": []}, "headers"),
        ({"url": "http://h/", "headers": {"A": 1}}, "headers.A"),
        ({"url": "http://h/", "headers": {"A": "env.NOT_SET_ANYWHERE_42"}}, "headers.A"),
        ({"url": "http://h/", "headers": {"A": "a\r\nB: c"}}, "headers.A"),
        ({"url": "http://h/", "include_request": "yes"}, "include_request"),
        ({"url": "http://h/", "timeout_ms": 5}, "timeout_ms"),
    ],
)
def test_config_errors_name_the_field(config: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build(config, PATH, [], 1.0)
    assert caught.value.path == f"{PATH}.{where}"
    assert "a\r\nB" not in str(caught.value)


async def test_url_with_credentials_is_never_in_errors(make: Callable[..., WebhookDetector], service: Service) -> None:
    async def slow(body: dict[str, Any]) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({"verdict": "allow"})

    service.answer = slow  # a failure after the URL was used: the error still names no credential
    detector = make(timeout_s=0.2, url=service.url.replace("http://", "http://admin:hunter2@"), headers={})
    with pytest.raises(DetectorError) as caught:
        await detector.check(subject(TEXT))
    assert "hunter2" not in str(caught.value)
    assert_clean(caught.value, service)


def test_url_credentials_and_an_authorization_header_are_refused_at_load() -> None:
    """aiohttp cannot send both: a config that could never work is an error at its path, value hidden."""
    with pytest.raises(ConfigError) as caught:
        build({"url": "http://admin:hunter2@h/", "headers": {"authorization": "Bearer x"}}, PATH, [], 1.0)
    assert caught.value.path == f"{PATH}.headers"
    assert "hunter2" not in str(caught.value) and "Bearer" not in str(caught.value)


def test_url_with_credentials_is_not_echoed_in_config_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        build({"url": "gopher://admin:hunter2@h/"}, PATH, [], 1.0)
    assert "hunter2" not in str(caught.value)


def test_payload_is_json_serialisable() -> None:
    detector = build({"url": "http://h/"}, PATH, [], 1.0)
    assert json.loads(json.dumps(detector.payload(subject("é")))) == {"stage": "input", "texts": ["é"], "request": {}}


def test_the_three_remote_kinds_build_from_guardrails_config() -> None:
    """Through the loader's own entry point (the kinds table): each kind built with its timeout and the
    shared fields removed; a misspelt field of a kind's own is an error at its path, with a suggestion."""
    from runtime.guardrails.config import parse_guardrails

    block = {
        "guardrail_providers": [
            {
                "id": 1,
                "provider_name": "webhook",
                "timeout": 2,
                "config": {"url": "http://127.0.0.1:9/x", "action": "flag", "failure_policy": "fail_open"},
            },
            {"id": 2, "provider_name": "moderation", "config": {"model": "openai/omni-moderation-latest"}},
            {"id": 3, "provider_name": "llm_judge", "config": {"model": "openai/gpt-4o-mini", "question": "q?"}},
        ],
        "guardrail_rules": [{"id": 1, "name": "r", "cel_expression": "true", "provider_config_ids": [1, 2, 3]}],
    }
    config = parse_guardrails(block, [])
    assert config is not None
    built = {p.provider_name: p for p in config.providers.values()}
    assert {k: (type(p.detector).__name__, p.detector.timeout_s) for k, p in built.items()} == {
        "webhook": ("WebhookDetector", 2.0),
        "moderation": ("ModerationDetector", 5.0),
        "llm_judge": ("JudgeDetector", 10.0),
    }
    assert built["webhook"].failure_policy == "fail_open" and built["webhook"].action == "flag"
    block["guardrail_providers"][0]["config"] = {"url": "http://h/", "header": {}}
    with pytest.raises(ConfigError) as caught:
        parse_guardrails(block, [])
    assert caught.value.path == "guardrails_config.guardrail_providers[0].config.header"
    assert "did you mean 'headers'" in str(caught.value)

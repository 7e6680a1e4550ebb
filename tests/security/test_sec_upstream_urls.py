"""Issue 9 item 5 (and item 4's non-Latin-1 model, item 13's `/v1` base_url): client input in upstream URLs.

The model string used to be pasted raw into upstream URLs: `azure/gpt-4o?api-version=1999-01-01#`
reached `/openai/deployments/gpt-4o?api-version=1999-01-01#/chat/completions?...` with our key, and a
non-Latin-1 model crashed the upstream client (500). Every provider that puts client input in a URL
(Azure's deployment, Gemini's and Vertex's model, Bedrock's model id, and the GenAI ingress that feeds
its path's model into them) must either refuse the string with a 4xx or send it as ONE percent-encoded
path segment. Each test runs the gateway as a process against the fakes and asserts the exact raw
path + query each fake received.

Item 13: a `base_url` that already ends in `/v1` (users write both) must not produce `/v1/v1/...`.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from fakes import FakeAzure, FakeOpenAI
from fakes.native import FakeBedrock, FakeGemini, FakeVertex
from fakes.native.vertex_fake import make_service_account
from harness import Gateway, StartGateway, make_config
from harness.config import DEFAULT_NETWORK
from harness.process import CLIENT_KEY

from runtime.providers.registry import join_base

MESSAGES = [{"role": "user", "content": "hello"}]
AZURE_API_VERSION = "2024-10-21"

# Strings a hostile client may put after "<provider>/": each must be refused (4xx) or encoded.
HOSTILE = [
    "gpt-4o?api-version=1999-01-01#",
    "../../x",
    "%2e%2e/%2e%2e/admin",
    "%2e%2e",
    "a/b",
    "x?key=stolen",
    "x#fragment",
    "x:streamGenerateContent",
    "x\r\nX-Injected: 1",
    "x y\tz",
    "模型",
    "modèle",
    "x\u0000y",
    "models/../../x",
    "claude-3@2024/../../y?alt=1#",
]
# Dot segments (and nothing) would be collapsed by a server or proxy: these must never reach a fake.
REFUSED = ["", ".", "..", "\ud800"]


class RawPaths:
    """Mixin for a fake: records every request's raw path + query, matched route or not."""

    raw_paths: list[str]

    def _make_app(self) -> web.Application:
        app: web.Application = super()._make_app()  # type: ignore[misc]
        self.raw_paths = []

        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            self.raw_paths.append(request.raw_path)
            return await handler(request)

        app.middlewares.append(record)
        return app


class RawAzure(RawPaths, FakeAzure):
    pass


class RawGemini(RawPaths, FakeGemini):
    pass


class RawVertex(RawPaths, FakeVertex):
    pass


class RawBedrock(RawPaths, FakeBedrock):
    pass


class RawOpenAI(RawPaths, FakeOpenAI):
    pass


def post(gateway: Gateway, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    request = urllib.request.Request(
        gateway.url(path),
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {CLIENT_KEY}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def chat(gateway: Gateway, model: str) -> tuple[int, bytes]:
    return post(gateway, "/v1/chat/completions", {"model": model, "messages": MESSAGES})


def segment(text: str, safe: str = "@") -> str:
    """What the gateway must send: the whole string as one percent-encoded path segment."""
    return quote(text, safe=safe)


def check(gateway: Gateway, fake: RawPaths, provider: str, expected: Any) -> list[int]:
    """Each hostile model is refused (4xx, nothing sent) or reaches the fake at exactly `expected(model)`.
    Returns the gateway's status for each model of HOSTILE."""
    statuses = []
    for model in HOSTILE + REFUSED:
        before = len(fake.raw_paths)
        status, raw = chat(gateway, f"{provider}/{model}")
        sent = [p for p in fake.raw_paths[before:] if p != "/token"]  # Vertex's OAuth fetch is ours
        assert status < 500, f"{model!r}: {status}: {raw[:300]!r}"
        if model in REFUSED:
            assert 400 <= status < 500 and not sent, f"{model!r} must be refused, got {status}, sent {sent}"
            continue
        statuses.append(status)
        for path in sent:
            assert path == expected(model), f"{model!r} reached {path!r}"
    return statuses


@pytest.fixture
def azure() -> Iterator[RawAzure]:
    fake = RawAzure().start()
    try:
        yield fake
    finally:
        fake.stop()


def test_azure_deployment_is_one_encoded_segment(start_gateway: StartGateway, azure: RawAzure) -> None:
    key = {
        "name": "az",
        "value": "azure-fake-key",
        "models": [],
        "weight": 1,
        "azure_key_config": {"endpoint": azure.url, "deployments": {}, "api_version": AZURE_API_VERSION},
    }
    gateway = start_gateway(make_config({"azure": {"keys": [key], "network_config": dict(DEFAULT_NETWORK)}}))
    check(
        gateway,
        azure,
        "azure",
        lambda m: f"/openai/deployments/{segment(m)}/chat/completions?api-version={AZURE_API_VERSION}",
    )
    # The reported attack: the configured api-version is the only one the fake ever saw.
    assert all(p.endswith(f"?api-version={AZURE_API_VERSION}") for p in azure.raw_paths)
    assert not any("1999-01-01" in p.split("?", 1)[1] for p in azure.raw_paths)


def native(base_url: str, key: dict[str, Any]) -> dict[str, Any]:
    return {"keys": [key], "network_config": {"base_url": base_url, **DEFAULT_NETWORK}}


def gemini_expected(model: str) -> str:
    for collection in ("models/", "tunedModels/"):
        if model.startswith(collection):
            return f"/v1beta/{collection}{segment(model[len(collection) :])}:generateContent"
    return f"/v1beta/models/{segment(model)}:generateContent"


def test_gemini_model_is_one_encoded_segment(start_gateway: StartGateway) -> None:
    with RawGemini() as fake:
        assert isinstance(fake, RawGemini)
        key = {"name": "gem", "value": "gemini-fake-key", "models": [], "weight": 1}
        gateway = start_gateway(make_config({"gemini": native(fake.url, key)}))
        check(gateway, fake, "gemini", gemini_expected)
        # The non-Latin-1 model of item 4 specifically: encoded, answered, never a 500.
        status, _ = chat(gateway, "gemini/模型")
        assert status == 200 and fake.raw_paths[-1] == "/v1beta/models/%E6%A8%A1%E5%9E%8B:generateContent"


def test_genai_ingress_path_model_cannot_steer_the_upstream(start_gateway: StartGateway) -> None:
    with RawGemini() as fake:
        assert isinstance(fake, RawGemini)
        key = {"name": "gem", "value": "gemini-fake-key", "models": [], "weight": 1}
        gateway = start_gateway(make_config({"gemini": native(fake.url, key)}))
        body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
        for tail in (
            "gemini/x%3Fkey%3Dstolen%23",
            "gemini/..%2F..%2Fadmin",
            "gemini/%2e%2e",
            "gemini/%E6%A8%A1%E5%9E%8B",
            "gemini/a%0D%0AX-Injected:%201",
            "gemini/x%3AcountTokens",
        ):
            before = len(fake.raw_paths)
            status, raw = post(gateway, f"/genai/v1beta/models/{tail}:generateContent", body)
            assert status < 500, (tail, status, raw[:200])
            for path in fake.raw_paths[before:]:
                # One segment after models/, only unreserved or %XX characters, no query, our method.
                assert re.fullmatch(r"/v1beta/models/[A-Za-z0-9._~@%-]+:generateContent", path), (tail, path)


def test_vertex_model_is_one_encoded_segment(start_gateway: StartGateway) -> None:
    with RawVertex() as fake:
        assert isinstance(fake, RawVertex)
        info, public_key = make_service_account(fake.token_uri)
        fake.trust(info, public_key)
        key = {
            "name": "sa",
            "value": "",
            "models": [],
            "weight": 1,
            "vertex_key_config": {
                "project_id": "fake-project",
                "region": "us-central1",
                "auth_credentials": json.dumps(info),
            },
        }
        gateway = start_gateway(make_config({"vertex": native(fake.url, key)}))
        root = "/v1/projects/fake-project/locations/us-central1/publishers"

        def expected(model: str) -> str:
            if model.startswith("claude"):
                return f"{root}/anthropic/models/{segment(model)}:rawPredict"
            return f"{root}/google/models/{segment(model)}:generateContent"

        check(gateway, fake, "vertex", expected)
        fake.raw_paths[:] = [p for p in fake.raw_paths if p != "/token"]
        status, _ = chat(gateway, "vertex/模型")
        assert status < 500 and fake.raw_paths[-1] == f"{root}/google/models/%E6%A8%A1%E5%9E%8B:generateContent"


def test_bedrock_model_id_is_encoded_and_still_signed(start_gateway: StartGateway) -> None:
    with RawBedrock() as fake:
        assert isinstance(fake, RawBedrock)
        bedrock_key = {"access_key": "AKIAFAKEEXAMPLE", "secret_key": "fake/secret+key", "region": "us-west-2"}
        key = {"name": "aws", "value": "", "models": [], "weight": 1, "bedrock_key_config": bedrock_key}
        gateway = start_gateway(make_config({"bedrock": native(fake.url, key)}))
        statuses = check(gateway, fake, "bedrock", lambda m: f"/model/{segment(m, safe='')}/converse")
        # Every answer the fake gave carried a signature botocore verified over the encoded path (a 404 is
        # the fake's router refusing a decoded CR/LF, before any signature check; a 403 would be a bad one).
        assert 403 not in statuses and fake.verified == statuses.count(200) > 10, (fake.verified, statuses)


@pytest.mark.parametrize("suffix", ["", "/v1", "/v1/"])
def test_openai_base_url_with_or_without_v1(start_gateway: StartGateway, suffix: str) -> None:
    with RawOpenAI() as fake:
        assert isinstance(fake, RawOpenAI)
        provider = {
            "keys": [{"name": "k", "value": "sk-fake-1", "models": [], "weight": 1}],
            "network_config": {"base_url": fake.url + suffix, **DEFAULT_NETWORK},
        }
        custom = {**provider, "custom_provider_config": {"base_provider_type": "openai"}}
        gateway = start_gateway(make_config({"openai": provider, "mycompat": custom}))
        for name in ("openai", "mycompat"):
            status, raw = chat(gateway, f"{name}/gpt-4o-mini")
            assert status == 200, raw[:200]
            assert fake.raw_paths[-1] == "/v1/chat/completions"


@pytest.mark.parametrize("suffix", ["/openai", "/openai/v1"])
def test_groq_style_base_with_a_path_keeps_it(start_gateway: StartGateway, suffix: str) -> None:
    # Groq's default base is https://api.groq.com/openai: the path before /v1 must survive.
    with RawOpenAI(prefixes=("/openai/v1",)) as fake:
        assert isinstance(fake, RawOpenAI)
        provider = {
            "keys": [{"name": "k", "value": "sk-fake-1", "models": [], "weight": 1}],
            "network_config": {"base_url": fake.url + suffix, **DEFAULT_NETWORK},
        }
        gateway = start_gateway(make_config({"groq": provider}))
        status, raw = chat(gateway, "groq/llama-3.3-70b-versatile")
        assert status == 200, raw[:200]
        assert fake.raw_paths[-1] == "/openai/v1/chat/completions"


def test_join_base_rule() -> None:
    assert join_base("https://api.openai.com", "/v1") == "https://api.openai.com/v1"
    assert join_base("https://api.openai.com/v1/", "/v1") == "https://api.openai.com/v1"
    assert join_base("https://api.groq.com/openai", "/v1") == "https://api.groq.com/openai/v1"
    assert join_base("http://v1", "/v1") == "http://v1/v1"  # a host named v1 is not a path
    assert join_base("https://api.perplexity.ai", "") == "https://api.perplexity.ai"
    assert join_base("https://generativelanguage.googleapis.com/v1beta", "/v1beta").endswith(".com/v1beta")


def test_http_client_request_line_is_always_ascii() -> None:
    # The backstop under the adapters: any URL text (e.g. a base_url from config) is percent-encoded
    # once per URL, so no character can break the request line or need latin-1.
    from runtime.net import HTTPClient

    _origin, line = HTTPClient()._target("http://127.0.0.1:9/a b/模型\r\nX: 1?q=é&r=1")
    target = line.split(b" HTTP/1.1\r\n")[0]
    assert line.isascii() and b"\r" not in target and b"\n" not in target
    assert target == b" /a%20b/%E6%A8%A1%E5%9E%8BX:%201?q=%C3%A9&r=1"  # urlsplit itself drops CR/LF/TAB

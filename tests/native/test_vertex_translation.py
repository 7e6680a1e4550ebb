"""Pure tests for Vertex AI pieces: the service-account JWT, endpoint building, and error shapes."""

from __future__ import annotations

import asyncio
import base64
import json
from types import MappingProxyType
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from fakes.native.vertex_fake import make_service_account

from runtime.config.model import KeyConfig, NetworkConfig, ProviderConfig
from runtime.providers.capabilities import COUNT_TOKENS
from runtime.providers.google_auth import TokenCache, _Token, make_assertion
from runtime.providers.registry import PROVIDER_SPECS
from runtime.providers.vertex import VertexAdapter


def _part(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def test_assertion_is_a_verifiable_rs256_jwt() -> None:
    info, public_key = make_service_account("https://oauth2.example/token")
    jwt = make_assertion(info, now=1_700_000_000)
    header, claims, signature = jwt.split(".")
    public_key.verify(_part(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
    assert json.loads(_part(header)) == {"alg": "RS256", "typ": "JWT", "kid": "fakekid1"}
    assert json.loads(_part(claims)) == {
        "iss": info["client_email"],
        "aud": "https://oauth2.example/token",
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "iat": 1_700_000_000,
        "exp": 1_700_003_600,
    }


def _provider() -> ProviderConfig:
    return ProviderConfig("vertex", "vertex", network=NetworkConfig(base_url=PROVIDER_SPECS["vertex"].base_url))


def _key(region: str) -> KeyConfig:
    return KeyConfig("k", "token", extra=MappingProxyType({"vertex_key_config": {"project_id": "p", "region": region}}))


def test_endpoints_per_region_and_publisher() -> None:
    adapter, spec = VertexAdapter(), PROVIDER_SPECS["vertex"]
    body = {"messages": [{"role": "user", "content": "hi"}]}
    regional = adapter.build_request(_provider(), spec, "chat", body, "gemini-2.5-pro", _key("europe-west4"), True)
    assert regional.url == (
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/p/locations/europe-west4/"
        "publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    )
    claude = adapter.build_request(_provider(), spec, "chat", body, "claude-opus-4-1", _key("global"), False)
    assert claude.url == (
        "https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/anthropic/"
        "models/claude-opus-4-1:rawPredict"
    )
    assert claude.payload["anthropic_version"] == "vertex-2023-10-16" and "model" not in claude.payload
    count = adapter.build_request(_provider(), spec, COUNT_TOKENS, body, "claude-opus-4-1", _key("us-east5"), False)
    assert count.url.endswith("/publishers/anthropic/models/count-tokens:rawPredict")
    assert count.payload["model"] == "claude-opus-4-1"


def test_errors_in_google_anthropic_and_list_shapes() -> None:
    adapter = VertexAdapter()
    google = adapter.parse_error(429, {}, b'{"error": {"code": 429, "message": "q", "status": "RESOURCE_EXHAUSTED"}}')
    wrapped = adapter.parse_error(404, {}, b'[{"error": {"code": 404, "message": "no", "status": "NOT_FOUND"}}]')
    claude = adapter.parse_error(529, {}, b'{"type": "error", "error": {"type": "overloaded_error", "message": "o"}}')
    assert (google.status, google.type) == (429, "rate_limit_error")
    assert (wrapped.status, wrapped.code) == (404, "not_found")
    assert (claude.status, claude.type, claude.retryable) == (503, "overloaded_error", True)


async def test_token_cache_shares_one_fetch_and_refreshes_early() -> None:
    now = [1000.0]
    fetched: list[str] = []

    class Counting(TokenCache):
        async def _fetch(self, info: Any, key: tuple[str, str], session: Any) -> Any:
            fetched.append(key[0])
            await asyncio.sleep(0)
            token = _Token(f"t{len(fetched)}", self.clock() + 3600)
            self._tokens[key] = token
            return token

    cache = Counting(clock=lambda: now[0])
    info = {"client_email": "sa@x", "private_key": "unused"}
    assert await asyncio.gather(*(cache.token(info, None) for _ in range(5))) == ["t1"] * 5
    now[0] += 3600 - 301  # still more than the margin left
    assert await cache.token(info, None) == "t1"
    now[0] += 2  # now inside the 300 s margin: refreshed before it expires
    assert await cache.token(info, None) == "t2"
    assert fetched == ["sa@x", "sa@x"]

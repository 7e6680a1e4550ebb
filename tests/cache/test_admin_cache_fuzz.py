"""Property-based fuzz of /api/cache (issue 12 item 6, untrusted input), on one gateway with caching on.

For every example: any text in an entry id, a cache key or the list's search / limit / offset is answered
200, 400 or 404 in the admin error shape, never 5xx; any JSON body PUT to /api/cache/config is answered
below 500 with a JSON body. Afterwards the gateway still caches (the edits never wedged the config store
or the plugin). Fixed budget (`derandomize=True`, no database); `BIFROST_FUZZ_EXAMPLES` scales it.
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from fakes import FakeOpenAI
from harness import Gateway, make_config, openai_provider
from harness.process import spawn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = max(20, int(os.environ.get("BIFROST_FUZZ_EXAMPLES", "800")) // 5)
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
DEFAULTS = {"dimension": 1, "ttl": 300, "default_cache_key": "default"}
CHAT = json.dumps({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "fuzz"}]}).encode()
GO_FIELDS = (
    "provider",
    "embedding_model",
    "ttl",
    "threshold",
    "dimension",
    "default_cache_key",
    "conversation_history_threshold",
    "cache_by_model",
    "cache_by_provider",
    "exclude_system_prompt",
    "keys",
    "cleanup_on_shutdown",
    "vector_store_namespace",
)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    fake = FakeOpenAI()
    fake.start()
    config = make_config({"openai": openai_provider(fake.url)})
    config["plugins"] = [{"name": "semantic_cache", "enabled": True, "config": DEFAULTS}]
    gateway = spawn(tmp_path_factory.mktemp("cache-fuzz"), config=config)
    try:
        gateway.wait_healthy()
        yield gateway
    finally:
        gateway.stop(timeout=15)
        gateway.kill()
        fake.stop()


def _request(gw: Gateway, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def _checked(status: int, raw: bytes, allowed: set[int]) -> Any:
    assert status in allowed, (status, raw[:300])
    body = json.loads(raw)
    if status >= 400:
        assert set(body["error"]) >= {"message", "type", "code", "param"}, body
    return body


TEXT = st.text(min_size=1, max_size=300)


@FUZZ_SETTINGS
@given(text=TEXT, route=st.sampled_from(["entries/", "clear/", "clear-by-key/"]))
def test_any_id_or_key_is_answered_below_500(gw: Gateway, text: str, route: str) -> None:
    method = "GET" if route == "entries/" else "DELETE"
    status, raw, _ = _request(gw, method, "/api/cache/" + route + quote(text, safe=""))
    _checked(status, raw, {200, 400, 404})


@FUZZ_SETTINGS
@given(
    params=st.dictionaries(
        st.sampled_from(["search", "limit", "offset"]),
        st.one_of(TEXT, st.integers(-(10**12), 10**12).map(str)),
        max_size=3,
    )
)
def test_any_list_query_is_answered_200_or_400(gw: Gateway, params: dict[str, str]) -> None:
    status, raw, _ = _request(gw, "GET", "/api/cache/entries?" + urlencode(params))
    body = _checked(status, raw, {200, 400})
    if status == 400:
        assert body["error"]["param"] in params, body


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)
CONFIGS = st.dictionaries(st.sampled_from(GO_FIELDS) | st.text(max_size=12), JSONISH, max_size=5)


@FUZZ_SETTINGS
@given(body=st.one_of(st.fixed_dictionaries({}, optional={"enabled": JSONISH, "config": CONFIGS | JSONISH}), JSONISH))
def test_any_config_put_is_answered_below_500(gw: Gateway, body: Any) -> None:
    status, raw, _ = _request(gw, "PUT", "/api/cache/config", json.dumps(body).encode())
    _checked(status, raw, {200, 400})


def test_still_caching_after_the_fuzz(gw: Gateway) -> None:
    status, raw, _ = _request(
        gw, "PUT", "/api/cache/config", json.dumps({"enabled": True, "config": DEFAULTS}).encode()
    )
    assert status == 200, raw
    assert _request(gw, "POST", "/v1/chat/completions", CHAT)[0] == 200
    status, _, headers = _request(gw, "POST", "/v1/chat/completions", CHAT)
    assert status == 200 and headers.get("x-bf-cache") == "hit-direct"
    assert json.loads(_request(gw, "GET", "/api/cache/stats")[1])["enabled"] is True

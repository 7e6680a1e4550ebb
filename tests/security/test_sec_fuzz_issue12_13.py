"""Property-based fuzz of what issues 12 and 13 add to the attack surface: the per-request cache headers
(`x-bf-cache-key`, `-ttl`, `-threshold`, `-type`, `-no-store`), the stream-recovery switch
(`x-bf-stream-resume`), and `PUT /api/model-groups`.

One gateway per module with caching on and a model group, in front of the fake OpenAI. For every example:
- any header value is answered 200 or 400 in the documented error shape, never 5xx;
- any JSON body PUT to /api/model-groups is answered below 500 with a JSON body;
afterwards the gateway still answers a cached request, its cache stats and its groups (nothing wedged).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fakes import FakeOpenAI
from harness import Gateway, make_config, openai_provider
from harness.fuzz import FUZZ_SETTINGS, header_values, json_values, raw_request
from harness.process import spawn
from hypothesis import given
from hypothesis import strategies as st

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
HEADERS = ("x-bf-cache-key", "x-bf-cache-ttl", "x-bf-cache-threshold", "x-bf-cache-type", "x-bf-cache-no-store")
GROUP = {"fast": {"targets": [{"model": "openai/gpt-4o-mini"}]}}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    fake = FakeOpenAI()
    fake.start()
    config = make_config({"openai": openai_provider(fake.url)})
    config["plugins"] = [{"name": "semantic_cache", "enabled": True, "config": {"dimension": 1, "ttl": 60}}]
    config["model_groups"] = GROUP
    gateway = spawn(tmp_path_factory.mktemp("cache-fuzz"), config=config)
    try:
        gateway.wait_healthy()
        yield gateway
    finally:
        gateway.stop(timeout=15)
        gateway.kill()
        fake.stop()


@FUZZ_SETTINGS
@given(
    values=st.dictionaries(st.sampled_from(HEADERS), header_values, min_size=1, max_size=5),
    stream=st.booleans(),
)
def test_any_cache_header_is_answered_200_or_400_in_shape(gw: Gateway, values: dict[str, str], stream: bool) -> None:
    body = json.dumps({**CHAT, "stream": stream}).encode()
    status, raw = raw_request(gw, "POST", "/v1/chat/completions", body, values)
    assert status in (200, 400), (status, raw[:300])
    if status == 400:
        error = json.loads(raw)["error"]
        assert set(error) >= {"message", "type"}, error


@FUZZ_SETTINGS
@given(value=header_values, ingress=st.sampled_from(("openai", "anthropic")))
def test_any_stream_resume_header_is_answered_below_500(gw: Gateway, value: str, ingress: str) -> None:
    if ingress == "openai":
        path, body = "/v1/chat/completions", {**CHAT, "stream": True}
    else:
        path, body = "/anthropic/v1/messages", {**CHAT, "stream": True, "max_tokens": 16}
    status, raw = raw_request(gw, "POST", path, json.dumps(body).encode(), {"x-bf-stream-resume": value})
    assert status in (200, 400), (status, raw[:300])


groups = st.one_of(
    json_values,
    st.dictionaries(
        st.text(max_size=20),
        st.one_of(
            json_values,
            st.fixed_dictionaries(
                {"targets": st.lists(st.dictionaries(st.sampled_from(("model", "weight")), json_values), max_size=3)},
                optional={"fallbacks": json_values, "strategy": json_values},
            ),
        ),
        max_size=3,
    ),
)


@FUZZ_SETTINGS
@given(body=groups)
def test_any_body_on_put_model_groups_is_answered_below_500(gw: Gateway, body: Any) -> None:
    status, raw = raw_request(gw, "PUT", "/api/model-groups", json.dumps(body).encode(), {})
    assert status < 500, (status, raw[:300])
    json.loads(raw)


def test_after_the_fuzz_the_gateway_still_caches_and_answers(gw: Gateway) -> None:
    status, raw = raw_request(gw, "PUT", "/api/model-groups", json.dumps({"model_groups": GROUP}).encode(), {})
    assert status == 200, raw[:300]

    body = json.dumps({**CHAT, "messages": [{"role": "user", "content": "after the fuzz"}]}).encode()
    seen = []
    for _ in range(2):  # a miss, then a hit: the store still serves after the fuzz
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
        try:
            conn.request(
                "POST",
                "/v1/chat/completions",
                body=body,
                headers={"Content-Type": "application/json", "x-bf-cache-key": "after"},
            )
            response = conn.getresponse()
            assert response.status == 200, response.read()[:300]
            seen.append(response.getheader("x-bf-cache"))
        finally:
            conn.close()
    assert seen == ["miss", "hit-direct"]
    status, raw = raw_request(gw, "GET", "/api/cache/stats", b"", {})
    assert status == 200 and json.loads(raw)["enabled"] is True
    status, raw = raw_request(gw, "POST", "/v1/chat/completions", json.dumps({**CHAT, "model": "fast"}).encode(), {})
    assert status == 200, raw[:300]

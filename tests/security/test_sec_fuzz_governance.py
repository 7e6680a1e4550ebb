"""Property-based fuzz of what governance adds to the attack surface (issue 11, untrusted input):
the virtual-key headers on inference routes, and the /api/governance management routes.

One governed gateway per module (a mandatory virtual key with a budget and a rate limit, a team, a
customer) in front of the fake OpenAI. For every example:
- any value in `Authorization`, `x-bf-vk`, `x-api-key` or `x-goog-api-key` is answered 200, 401 or 403
  (or a 402/429 from the limits) in the documented error shape, never 5xx, and never echoes the value;
- any JSON body POSTed or PUT to a governance route is answered below 500 with a JSON body;
afterwards the gateway still answers its lists and a governed request (no edit wedged the store).
The budget is fixed (`derandomize=True`, no database); `BIFROST_FUZZ_EXAMPLES` scales it.
"""

from __future__ import annotations

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

VK = "sk-bf-fuzz-0000000001"
KINDS = ("virtual-keys", "teams", "customers", "budgets", "rate-limits")
IDS = dict(zip(KINDS, ("vk-fuzz", "team-fuzz", "cust-fuzz", "b-fuzz", "rl-fuzz"), strict=True))
CHAT = json.dumps({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    fake = FakeOpenAI()
    fake.start()
    config = make_config({"openai": openai_provider(fake.url)}, enforce_auth_on_inference=True)
    governance: dict[str, Any] = {
        "budgets": [{"id": "b-fuzz", "max_limit": 1000.0, "reset_duration": "1d"}],
        "rate_limits": [{"id": "rl-fuzz", "request_max_limit": 1_000_000, "request_reset_duration": "1h"}],
        "customers": [{"id": "cust-fuzz", "name": "Customer"}],
        "teams": [{"id": "team-fuzz", "name": "Team", "customer_id": "cust-fuzz"}],
        "virtual_keys": [
            {
                "id": "vk-fuzz",
                "name": "fuzz",
                "value": VK,
                "team_id": "team-fuzz",
                "budget_id": "b-fuzz",
                "rate_limit_id": "rl-fuzz",
            }
        ],
    }
    config["governance"] = governance
    gateway = spawn(tmp_path_factory.mktemp("gov-fuzz"), config=config)
    try:
        gateway.wait_healthy()
        yield gateway
    finally:
        gateway.stop(timeout=15)
        gateway.kill()
        fake.stop()


@FUZZ_SETTINGS
@given(name=st.sampled_from(("Authorization", "x-bf-vk", "x-api-key", "x-goog-api-key")), value=header_values)
def test_any_key_header_is_answered_in_shape_and_never_echoed(gw: Gateway, name: str, value: str) -> None:
    sent = f"Bearer {value}" if name == "Authorization" and not value.startswith("Bearer") else value
    status, raw = raw_request(gw, "POST", "/v1/chat/completions", CHAT, {name: sent})
    assert status in (200, 401, 402, 403, 429), (status, raw[:300])
    body = json.loads(raw)
    if status != 200:
        assert set(body["error"]) >= {"message", "type"}, body
        if len(value) >= 8 and value != VK:
            assert value.encode("utf-8", "replace") not in raw, "a presented key came back in the answer"


entity_fields = st.sampled_from(
    ("id", "name", "value", "budget_id", "rate_limit_id", "team_id", "customer_id", "max_limit", "reset_duration",
     "calendar_aligned", "request_max_limit", "token_max_limit", "provider_configs", "is_active", "budget",
     "rate_limit", "allowed_models", "expires_at", "description")
)  # fmt: skip
bodies = st.one_of(json_values, st.dictionaries(entity_fields, json_values, max_size=6))


@FUZZ_SETTINGS
@given(kind=st.sampled_from(KINDS), method=st.sampled_from(("POST", "PUT")), body=bodies)
def test_any_body_on_a_governance_route_is_answered_below_500(gw: Gateway, kind: str, method: str, body: Any) -> None:
    path = f"/api/governance/{kind}" if method == "POST" else f"/api/governance/{kind}/{IDS[kind]}"
    status, raw = raw_request(gw, method, path, json.dumps(body).encode(), {})
    assert status < 500, (status, raw[:300])
    json.loads(raw)


def test_after_the_fuzz_the_gateway_still_answers(gw: Gateway) -> None:
    for kind in KINDS:
        status, raw = raw_request(gw, "GET", f"/api/governance/{kind}", b"", {})
        assert status == 200, (kind, raw[:300])
    status, raw = raw_request(gw, "POST", "/v1/chat/completions", CHAT, {"Authorization": f"Bearer {VK}"})
    assert status < 500, raw[:300]

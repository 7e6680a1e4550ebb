"""Virtual keys through real gateway processes, the official SDKs as clients, fakes as providers.

Each SDK presents the virtual key as its own API key (openai: Authorization: Bearer, anthropic:
x-api-key, google-genai: x-goog-api-key); the fake provider must only ever see the gateway's provider
key. Refusals come in each ingress's own error shape with Go Bifrost's statuses (401 missing or unknown
key, 403 disabled / expired / provider or model not allowed).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest
from fakes import FakeOpenAI
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from harness import Gateway
from harness.config import custom_provider, key, make_config, openai_provider

VK = "sk-bf-test-team-a-0001"
VK_DISABLED = "sk-bf-test-disabled-0002"
VK_EXPIRED = "sk-bf-test-expired-0003"
VK_LIMITED = "sk-bf-test-limited-0004"
ALL_VKS = (VK, VK_DISABLED, VK_EXPIRED, VK_LIMITED)
MESSAGES = [{"role": "user", "content": "hello there"}]


def governed_config(openai_url: str, backup_url: str | None = None, **client: Any) -> dict[str, Any]:
    providers: dict[str, Any] = {"openai": openai_provider(openai_url)}
    if backup_url is not None:
        providers["backup"] = custom_provider(backup_url, keys=("sk-fake-2",))
    config = make_config(providers, **client)
    config["governance"] = {
        "budgets": [{"id": "b-team", "max_limit": 100, "reset_duration": "1M"}],
        "rate_limits": [{"id": "rl-key", "request_max_limit": 1000, "request_reset_duration": "1m"}],
        "customers": [{"id": "cust-1", "name": "Acme"}],
        "teams": [{"id": "team-a", "name": "Team A", "customer_id": "cust-1", "budget_id": "b-team"}],
        "virtual_keys": [
            {
                "id": "vk-a",
                "name": "team-a key",
                "value": "env.TEST_VK_A",
                "team_id": "team-a",
                "rate_limit_id": "rl-key",
            },
            {"id": "vk-off", "name": "disabled", "value": VK_DISABLED, "is_active": False},
            {"id": "vk-old", "name": "expired", "value": VK_EXPIRED, "expires_at": "2020-01-01T00:00:00Z"},
            {
                "id": "vk-limited",
                "name": "limited",
                "value": VK_LIMITED,
                "provider_configs": [{"provider": "openai", "allowed_models": ["gpt-4o-mini"]}],
            },
        ],
    }
    return config


ENV = {"TEST_VK_A": VK}


def anthropic_client(gw: Gateway, api_key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url + "/anthropic", api_key=api_key, max_retries=0)


def genai_client(gw: Gateway, api_key: str) -> genai.Client:
    options = types.HttpOptions(
        base_url=gw.base_url + "/genai", timeout=60_000, retry_options=types.HttpRetryOptions(attempts=1)
    )
    return genai.Client(api_key=api_key, http_options=options)


def assert_never_forwarded(*fakes: FakeOpenAI) -> None:
    """No virtual key (nor its digest's owner's value) in any header or body a provider received."""
    for fake in fakes:
        for rec in fake.requests:
            seen = json.dumps(dict(rec.headers)) + rec.raw.decode("utf-8", "replace")
            for vk in ALL_VKS:
                assert vk not in seen, f"virtual key reached the provider: {rec.path}"
            assert "sk-bf-" not in seen


@pytest.fixture
def enforced(start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI) -> Iterator[Gateway]:
    yield start_gateway(governed_config(fake_openai.url, enforce_auth_on_inference=True), env=ENV)


# -- each official SDK with a virtual key as its API key ----------------------------------------------------
def test_each_sdk_works_with_a_virtual_key_which_never_reaches_the_provider(
    enforced: Gateway, fake_openai: FakeOpenAI
) -> None:
    gw = enforced
    with gw.client(api_key=VK) as client:
        chat = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        assert chat.choices[0].message.content
        stream = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert client.responses.create(model="openai/gpt-4o-mini", input="hi").output_text
    with anthropic_client(gw, VK) as ac:
        msg = ac.messages.create(model="openai/gpt-4o-mini", max_tokens=20, messages=MESSAGES)  # type: ignore[arg-type]
        assert msg.content
    with genai_client(gw, VK) as gc:
        assert gc.models.generate_content(model="openai/gpt-4o-mini", contents="hi").text
    # x-bf-vk beside a client's own (non-virtual) key: the virtual key governs, neither is forwarded.
    with gw.client(api_key="sk-client-own-key", default_headers={"x-bf-vk": VK}) as client:
        assert client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES).choices  # type: ignore[arg-type]
    assert len(fake_openai.requests) == 6
    assert {rec.bearer for rec in fake_openai.requests} == {"sk-fake-1"}  # the gateway's provider key only
    assert_never_forwarded(fake_openai)


# -- 401 without a key, in each ingress's shape -------------------------------------------------------------
def test_missing_key_is_401_in_each_ingress_shape(enforced: Gateway, fake_openai: FakeOpenAI) -> None:
    gw = enforced
    with gw.client() as client:  # the harness's placeholder key is not a virtual key: keyless
        with pytest.raises(openai.AuthenticationError) as chat_err:
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        with pytest.raises(openai.AuthenticationError) as resp_err:
            client.responses.create(model="openai/gpt-4o-mini", input="hi")
    assert chat_err.value.body["type"] == "virtual_key_required"  # type: ignore[index]
    assert "x-bf-vk" in chat_err.value.body["message"]  # type: ignore[index]
    assert resp_err.value.body["code"] == "virtual_key_required"  # type: ignore[index]
    with anthropic_client(gw, "sk-ant-not-virtual") as ac, pytest.raises(anthropic.AuthenticationError) as ant_err:
        ac.messages.create(model="openai/gpt-4o-mini", max_tokens=10, messages=MESSAGES)  # type: ignore[arg-type]
    assert ant_err.value.body["type"] == "error"  # type: ignore[index]
    assert ant_err.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with genai_client(gw, "AIza-not-virtual") as gc, pytest.raises(genai_errors.ClientError) as gen_err:
        gc.models.generate_content(model="openai/gpt-4o-mini", contents="hi")
    assert gen_err.value.code == 401 and gen_err.value.status == "UNAUTHENTICATED"
    assert fake_openai.requests == []


def test_unknown_disabled_and_expired_keys_are_refused(enforced: Gateway, fake_openai: FakeOpenAI) -> None:
    gw = enforced
    with gw.client(api_key="sk-bf-never-issued") as client, pytest.raises(openai.AuthenticationError) as unknown:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert unknown.value.body["type"] == "virtual_key_not_found"  # type: ignore[index]
    assert "sk-bf-never-issued" not in json.dumps(unknown.value.body)  # the presented value is never echoed
    with gw.client(api_key=VK_DISABLED) as client, pytest.raises(openai.PermissionDeniedError) as disabled:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert disabled.value.body["type"] == "virtual_key_blocked"  # type: ignore[index]
    assert disabled.value.body["message"] == "Virtual key is inactive"  # type: ignore[index]
    with anthropic_client(gw, VK_EXPIRED) as ac, pytest.raises(anthropic.PermissionDeniedError) as expired:
        ac.messages.create(model="openai/gpt-4o-mini", max_tokens=10, messages=MESSAGES)  # type: ignore[arg-type]
    assert expired.value.body["error"]["message"] == "Virtual key has expired"  # type: ignore[index]
    # An unknown value in x-bf-vk is refused even beside a usable Authorization value.
    with (
        gw.client(api_key=VK, default_headers={"x-bf-vk": "not-a-key"}) as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert fake_openai.requests == []


def test_allowed_model_and_provider_refusals(enforced: Gateway, fake_openai: FakeOpenAI) -> None:
    gw = enforced
    with gw.client(api_key=VK_LIMITED) as client:
        assert client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES).choices  # type: ignore[arg-type]
        assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices  # type: ignore[arg-type]
        with pytest.raises(openai.PermissionDeniedError) as model_err:
            client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
        with pytest.raises(openai.PermissionDeniedError) as provider_err:
            client.chat.completions.create(model="mock/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        with pytest.raises(openai.PermissionDeniedError) as fallback_err:
            client.chat.completions.create(
                model="openai/gpt-4o-mini",
                messages=MESSAGES,  # type: ignore[arg-type]
                extra_body={"fallbacks": ["mock/gpt-4o-mini"]},
            )
    assert model_err.value.body["type"] == "model_blocked"  # type: ignore[index]
    assert model_err.value.body["message"] == "Model 'gpt-4o' is not allowed for this virtual key"  # type: ignore[index]
    assert provider_err.value.body["type"] == "provider_blocked"  # type: ignore[index]
    assert fallback_err.value.body["param"] == "fallbacks[0]"  # type: ignore[index]
    with genai_client(gw, VK_LIMITED) as gc, pytest.raises(genai_errors.ClientError) as gen_err:
        gc.models.generate_content(model="openai/gpt-4o", contents="hi")
    assert gen_err.value.code == 403
    assert len(fake_openai.requests) == 2  # only the two allowed requests went upstream


# -- keys optional: keyless requests still work, keyed ones are governed ------------------------------------
def test_without_enforcement_keyless_requests_pass_and_keys_are_still_checked(
    start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI
) -> None:
    gw = start_gateway(governed_config(fake_openai.url), env=ENV)
    with gw.client() as client:
        assert client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES).choices  # type: ignore[arg-type]
    with gw.client(api_key=VK_LIMITED) as client, pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    with gw.client(api_key="sk-bf-never-issued") as client, pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert len(fake_openai.requests) == 1


def test_is_vk_mandatory_plugin_setting_enforces_too(
    start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI
) -> None:
    config = governed_config(fake_openai.url)
    config["plugins"] = [{"name": "governance", "enabled": True, "config": {"is_vk_mandatory": True}}]
    gw = start_gateway(config, env=ENV)
    with gw.client() as client, pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    with gw.client(api_key=VK) as client:
        assert client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES).choices  # type: ignore[arg-type]


# -- weighted routing of a bare model name, and allowed_keys -------------------------------------------------
def test_weighted_routing_of_a_bare_model_across_two_providers(
    start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    config = governed_config(fake_openai.url, fake_openai_2.url, enforce_auth_on_inference=True)
    config["governance"]["virtual_keys"].append(
        {
            "id": "vk-split",
            "name": "split",
            "value": "sk-bf-test-split-0005",
            "provider_configs": [
                {"provider": "openai", "weight": 3, "allowed_models": ["gpt-4o-mini"]},
                {"provider": "backup", "weight": 1, "allowed_models": ["gpt-4o-mini", "backup-only"]},
            ],
        }
    )
    gw = start_gateway(config, env=ENV)
    n = 200
    with gw.client(api_key="sk-bf-test-split-0005") as client:
        for _ in range(n):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        # A model only one provider config allows always goes there.
        for _ in range(5):
            client.chat.completions.create(model="backup-only", messages=MESSAGES)  # type: ignore[arg-type]
    first = len(fake_openai.requests)
    second = len(fake_openai_2.requests)
    assert first + second == n + 5
    assert {r.model for r in fake_openai.requests} == {"gpt-4o-mini"}
    assert sum(1 for r in fake_openai_2.requests if r.model == "backup-only") == 5
    share = first / n  # expected 0.75; the bounds are ~6 standard deviations wide
    assert 0.55 < share < 0.92, (first, second)
    assert_never_forwarded(fake_openai, fake_openai_2)


def test_weighted_routing_fails_over_to_the_other_provider(
    start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    from fakes.reply import Reply

    config = governed_config(fake_openai.url, fake_openai_2.url)
    config["governance"]["virtual_keys"].append(
        {
            "id": "vk-primary",
            "name": "primary",
            "value": "sk-bf-test-primary-0006",
            "provider_configs": [{"provider": "openai", "weight": 1}, {"provider": "backup", "weight": 0}],
        }
    )
    gw = start_gateway(config, env=ENV)
    fake_openai.always(Reply.server_error(503))
    with gw.client(api_key="sk-bf-test-primary-0006") as client:
        assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices  # type: ignore[arg-type]
    assert len(fake_openai.requests) == 1 and len(fake_openai_2.requests) == 1  # the rest became fallbacks


def test_allowed_keys_restrict_the_provider_keys_used(start_gateway: Callable[..., Gateway]) -> None:
    fake = FakeOpenAI(keys=("sk-fake-a", "sk-fake-b")).start()
    try:
        config = make_config(
            {"openai": openai_provider(fake.url, [key("sk-fake-a", name="ka"), key("sk-fake-b", name="kb")])}
        )
        config["governance"] = {
            "virtual_keys": [
                {
                    "id": "vk-b",
                    "name": "only kb",
                    "value": VK,
                    "provider_configs": [{"provider": "openai", "allowed_keys": ["kb"]}],
                }
            ]
        }
        gw = start_gateway(config)
        with gw.client(api_key=VK) as client:
            for _ in range(20):
                client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        assert {r.bearer for r in fake.requests} == {"sk-fake-b"}
        with gw.client() as client:  # keyless (not enforced here): every key may serve it, as before
            for _ in range(40):
                client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        assert {r.bearer for r in fake.requests[20:]} == {"sk-fake-a", "sk-fake-b"}
    finally:
        fake.stop()


# -- the log row names the key by id, never by value ---------------------------------------------------------
def test_log_rows_record_the_virtual_key_id_never_its_value(enforced: Gateway, fake_openai: FakeOpenAI) -> None:
    gw = enforced
    with gw.client(api_key=VK) as client:
        ok = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    with gw.client(api_key="sk-bf-never-issued") as client, pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    rows = gw.log.wait_rows(2)
    by_id = {row["id"]: row for row in rows}
    assert by_id[ok.headers["x-request-id"]]["virtual_key_id"] == "vk-a"
    refused = [row for row in rows if row["status"] == 401]
    assert len(refused) == 1 and refused[0]["virtual_key_id"] is None
    dump = json.dumps([dict(row) for row in rows], default=str)
    assert VK not in dump and "sk-bf-never-issued" not in dump


# -- live: config.json edits apply without a restart ---------------------------------------------------------
def test_edited_config_applies_keys_live(start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI) -> None:
    import time

    config = governed_config(fake_openai.url, enforce_auth_on_inference=True)
    gw = start_gateway(config, env=ENV)
    new_key = "sk-bf-test-added-live-0007"
    config["governance"]["virtual_keys"][0]["is_active"] = False
    config["governance"]["virtual_keys"].append({"id": "vk-new", "name": "added", "value": new_key})
    (gw.app_dir / "config.json").write_text(json.dumps(config))

    def status(api_key: str) -> int:
        with gw.client(api_key=api_key) as client:
            try:
                client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
            except openai.APIStatusError as err:
                return err.status_code
            return 200

    deadline = time.monotonic() + 30  # the file watcher polls once a second; bounded, not timed
    while status(new_key) != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status(new_key) == 200
    assert status(VK) == 403  # disabled by the same edit


def test_spawned_workers_enforce_keys(start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI) -> None:
    """Spawned workers get the config by pickle: the keys (digests) must arrive and be enforced."""
    config = governed_config(fake_openai.url, enforce_auth_on_inference=True)
    gw = start_gateway(config, env={**ENV, "BIFROST_MP_START": "spawn"}, args=("--workers", "2"))
    for _ in range(6):
        with gw.client(api_key=VK) as client:
            assert client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES).choices  # type: ignore[arg-type]
        with gw.client() as client, pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]

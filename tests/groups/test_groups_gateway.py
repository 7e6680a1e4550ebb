"""Model groups through real gateway processes: the official SDKs ask for a group's name, fake providers
count what reaches them (docs/model-groups.md)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest
from fakes import FakeOpenAI, Reply
from google import genai
from google.genai import types
from harness import Gateway, StartGateway, make_config, openai_provider
from harness.config import custom_provider

MESSAGES = [{"role": "user", "content": "group"}]
VK_BACKUP = "sk-bf-groups-backup-0001"
VK_MOCK = "sk-bf-groups-mock-0002"
DOWN = Reply.error(503, "The server is overloaded or not ready yet.", "server_error")

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def groups(primary_weight: float = 3) -> dict[str, Any]:
    return {
        "fast-chat": {
            "targets": [
                {"model": "openai/gpt-4o-mini", "weight": primary_weight},
                {"model": "backup/llama-3.3-70b-versatile", "weight": 1},
            ],
            "fallbacks": ["mock/mock-chat"],
        },
        "gpt-4o": {"targets": [{"model": "openai/gpt-4o"}]},
    }


def config_for(fake: FakeOpenAI, fake_2: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    config = make_config(
        {"openai": openai_provider(fake.url), "backup": custom_provider(fake_2.url, keys=("sk-fake-2",))}
    )
    config["model_groups"] = groups()
    config.update(extra)
    return config


@pytest.fixture
def gateway(start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI) -> Gateway:
    return start_gateway(config_for(fake_openai, fake_openai_2), args=("--workers", "1"))


def ask(gw: Gateway, model: str = "fast-chat", **kwargs: Any) -> Any:
    with gw.client(**kwargs) as client:
        return client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)  # type: ignore[arg-type]


def get_json(gw: Gateway, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(gw.url(path), data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


def test_a_group_spreads_traffic_by_weight(
    gateway: Gateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    ids = [ask(gateway).headers["x-request-id"] for _ in range(40)]
    assert len(fake_openai.requests) == 30 and len(fake_openai_2.requests) == 10  # 3:1, exactly, one worker
    assert {r.model for r in fake_openai.requests} == {"gpt-4o-mini"}
    assert {r.model for r in fake_openai_2.requests} == {"llama-3.3-70b-versatile"}
    rows = [gateway.log.row_for(i) for i in ids]
    assert {r["model_requested"] for r in rows} == {"fast-chat"}  # the group; the chosen target below
    assert sorted((r["provider"], r["model"]) for r in rows).count(("openai", "gpt-4o-mini")) == 30
    assert sum(1 for r in rows if (r["provider"], r["model"]) == ("backup", "llama-3.3-70b-versatile")) == 10


def test_a_group_fails_over_to_the_next_member_then_to_its_fallbacks(
    gateway: Gateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    fake_openai.always(DOWN)  # the first pick (weight 3) is down: the other member answers
    raw = ask(gateway)
    assert raw.parse().choices[0].message.content == "fake-openai-2: group"
    assert (len(fake_openai.requests), len(fake_openai_2.requests)) == (1, 1)
    row = gateway.log.row_for(raw.headers["x-request-id"])
    assert (row["model_requested"], row["provider"], row["model"]) == ("fast-chat", "backup", "llama-3.3-70b-versatile")
    fake_openai_2.always(DOWN)  # both members down: the group's fallback (the built-in mock) answers
    raw = ask(gateway)
    assert raw.parse().system_fingerprint == "bifrost-mock"
    assert (len(fake_openai.requests), len(fake_openai_2.requests)) == (2, 2)  # each member once more
    row = gateway.log.row_for(raw.headers["x-request-id"])
    assert (row["model_requested"], row["provider"]) == ("fast-chat", "mock")
    attempts = json.loads(row["attempts"])
    assert [(a["provider"], a["status"]) for a in attempts] == [("openai", 503), ("backup", 503)] or [
        (a["provider"], a["status"]) for a in attempts
    ] == [("backup", 503), ("openai", 503)]


def test_a_group_works_through_every_ingress_and_streams(
    gateway: Gateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    gw = gateway
    with gw.client() as client:
        stream = client.chat.completions.create(model="fast-chat", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).endswith(": group")
        assert client.responses.create(model="fast-chat", input="group").output_text.endswith(": group")
    with anthropic.Anthropic(base_url=gw.base_url + "/anthropic", api_key="placeholder", max_retries=0) as ac:
        msg = ac.messages.create(model="fast-chat", max_tokens=20, messages=MESSAGES)  # type: ignore[arg-type]
        assert msg.model == "fast-chat" and msg.content[0].text.endswith(": group")  # type: ignore[union-attr]
        with ac.messages.stream(model="gpt-4o", max_tokens=20, messages=MESSAGES) as streamed:  # type: ignore[arg-type]
            assert streamed.get_final_text() == "fake-openai: group"
    options = types.HttpOptions(
        base_url=gw.base_url + "/genai", timeout=60_000, retry_options=types.HttpRetryOptions(attempts=1)
    )
    with genai.Client(api_key="placeholder", http_options=options) as gc:
        assert (gc.models.generate_content(model="fast-chat", contents="group").text or "").endswith(": group")
    served = len(fake_openai.requests) + len(fake_openai_2.requests)
    assert served == 5 and len(fake_openai.requests) >= 3  # 3:1 over four group requests, gpt-4o on openai


def test_groups_are_listed(gateway: Gateway) -> None:
    status, body = get_json(gateway, "/v1/models")
    assert status == 200
    listed = {m["id"]: m for m in body["data"]}
    assert listed["fast-chat"]["owned_by"] == "bifrost-group" and listed["gpt-4o"]["owned_by"] == "bifrost-group"
    assert "openai/gpt-4o-mini" in listed  # the providers' models as before
    _, body = get_json(gateway, "/anthropic/v1/models")
    assert "fast-chat" in {m["id"] for m in body["data"]}
    _, body = get_json(gateway, "/genai/v1beta/models")
    assert "models/fast-chat" in {m["name"] for m in body["models"]}
    status, body = get_json(gateway, "/api/model-groups")
    assert status == 200
    fast = next(g for g in body["model_groups"] if g["name"] == "fast-chat")
    assert fast["targets"] == [
        {"model": "openai/gpt-4o-mini", "weight": 3.0, "usable": True},
        {"model": "backup/llama-3.3-70b-versatile", "weight": 1.0, "usable": True},
    ]
    assert fast["fallbacks"] == [{"model": "mock/mock-chat", "usable": True}] and fast["strategy"] == "weighted"
    _, config = get_json(gateway, "/api/config")
    assert [g["name"] for g in config["model_groups"]] == ["fast-chat", "gpt-4o"]
    assert any(w.startswith("model_groups.gpt-4o: 'gpt-4o' is also a model") for w in config["warnings"])


def test_virtual_key_allow_lists_apply_to_the_groups_targets(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    governance = {
        "virtual_keys": [
            {"id": "vk-b", "value": VK_BACKUP, "provider_configs": [{"provider": "backup"}]},
            {"id": "vk-m", "value": VK_MOCK, "provider_configs": [{"provider": "mock"}]},
        ]
    }
    config = config_for(fake_openai, fake_openai_2, governance=governance)
    config["client"]["enforce_auth_on_inference"] = True
    gw = start_gateway(config)
    ids = [ask(gw, api_key=VK_BACKUP).headers["x-request-id"] for _ in range(4)]
    assert (len(fake_openai.requests), len(fake_openai_2.requests)) == (0, 4)  # only the target the key allows
    row = gw.log.row_for(ids[0])
    assert (row["model_requested"], row["provider"], row["virtual_key_id"]) == ("fast-chat", "backup", "vk-b")
    raw = ask(gw, api_key=VK_MOCK)  # only the group's fallback is this key's
    assert raw.parse().system_fingerprint == "bifrost-mock"
    with pytest.raises(openai.PermissionDeniedError) as err:
        ask(gw, model="gpt-4o", api_key=VK_BACKUP)  # nothing of this group is the key's
    assert err.value.code == "model_blocked" and "gpt-4o" in err.value.message
    assert (len(fake_openai.requests), len(fake_openai_2.requests)) == (0, 4)


def wait_for(check: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds  # the file watcher polls once a second: bounded, not timed
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def test_groups_change_live_with_config_edits(
    gateway: Gateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    gw = gateway
    config = json.loads((gw.app_dir / "config.json").read_text())
    config["model_groups"]["fast-chat"]["targets"] = [{"model": "backup/llama-3.3-70b-versatile"}]
    config["model_groups"]["added-live"] = {"targets": [{"model": "openai/gpt-4o"}]}
    (gw.app_dir / "config.json").write_text(json.dumps(config))
    assert wait_for(lambda: "added-live" in {m["id"] for m in get_json(gw, "/v1/models")[1]["data"]})
    fake_openai.recorder.reset()
    fake_openai_2.recorder.reset()
    for _ in range(4):
        ask(gw)
    assert (len(fake_openai.requests), len(fake_openai_2.requests)) == (0, 4)
    assert ask(gw, model="added-live").parse().choices[0].message.content == "fake-openai: group"
    # Through the admin API: an invalid target is refused with its path, nothing changes; a valid one applies.
    bad = {"model_groups": {"x": {"targets": [{"model": "nowhere/m"}]}}}
    status, body = get_json(gw, "/api/model-groups", "PUT", bad)
    assert status == 400 and body["error"]["param"] == "model_groups.x.targets[0].model"
    good = {"model_groups": {"only-openai": {"targets": [{"model": "openai/gpt-4o-mini"}]}}}
    status, body = get_json(gw, "/api/model-groups", "PUT", good)
    assert status == 200 and [g["name"] for g in body["model_groups"]] == ["only-openai"]
    assert ask(gw, model="only-openai").parse().choices[0].message.content == "fake-openai: group"
    with pytest.raises(openai.BadRequestError):
        ask(gw)  # fast-chat was removed with the rest of the block
    assert "only-openai" in json.loads((gw.app_dir / "config.json").read_text())["model_groups"]

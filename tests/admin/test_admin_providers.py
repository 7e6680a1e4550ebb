"""Providers through /api: masking, create/update/delete applied at once and persisted, validation,
the test button, client settings and the profile/lane views."""

from __future__ import annotations

import json

from fakes import FakeOpenAI
from fakes.reply import Reply
from harness import Gateway, StartGateway, make_config, openai_provider

from .conftest import Api, read_config


def test_list_masks_every_key(api: Api) -> None:
    answer = api.get("/api/providers")
    assert answer.status == 200
    names = [p["name"] for p in answer.body["providers"]]
    assert names == ["mock", "openai"]
    openai = next(p for p in answer.body["providers"] if p["name"] == "openai")
    assert openai["keys"][0]["name"] == "sk-fake-1"
    assert openai["keys"][0]["value_source"] == "inline"
    # The value never appears, in any response, in full.
    for path in ("/api/providers", "/api/providers/openai", "/api/config", "/api/system"):
        text = api.get(path).text
        assert '"value": "sk-fake-1"' not in text, path
    assert openai["keys"][0]["value"].startswith("••••")
    assert openai["lane"]["in_flight"] == 0 and openai["lane"]["queued"] == 0


def test_create_applies_at_once_and_persists(api: Api, admin_gateway: Gateway, fake_openai_2: FakeOpenAI) -> None:
    provider = {
        "name": "second",
        "custom_provider_config": {"base_provider_type": "openai"},
        **openai_provider(fake_openai_2.url, keys=({"name": "k2", "value": "sk-fake-2"},)),
    }
    created = api.post("/api/providers", provider)
    assert created.status == 201, created.text
    assert created.body["keys"][0]["value"] != "sk-fake-2"
    assert "sk-fake-2" not in created.text
    answer = api.chat("second/gpt-4o-mini", "ping")
    assert answer.status == 200, answer.text
    assert answer.body["choices"][0]["message"]["content"].startswith("fake-openai-2")
    stored = read_config(admin_gateway)["providers"]["second"]
    assert stored["keys"][0]["value"] == "sk-fake-2"  # the file keeps the secret; responses never do
    again = api.post("/api/providers", provider)
    assert again.status == 409


def test_update_keeps_masked_secrets_and_env_references(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    config = make_config(
        {
            "openai": openai_provider(
                fake_openai.url,
                keys=({"name": "from-env", "value": "env.FAKE_OPENAI_KEY", "models": [], "weight": 1.0},),
            )
        }
    )
    gateway = start_gateway(config, env={"FAKE_OPENAI_KEY": "sk-fake-1"})
    api = Api(gateway.base_url)
    view = api.get("/api/providers/openai").body
    assert view["keys"][0]["value"] == "env.FAKE_OPENAI_KEY"
    assert view["keys"][0]["value_source"] == "env"
    view["keys"][0]["weight"] = 3
    view["models"] = ["gpt-4o-mini"]
    updated = api.put("/api/providers/openai", view)
    assert updated.status == 200, updated.text
    assert updated.body["keys"][0]["weight"] == 3
    stored = read_config(gateway)["providers"]["openai"]
    assert stored["keys"][0]["value"] == "env.FAKE_OPENAI_KEY"  # still a reference, never the secret
    assert "sk-fake-1" not in (gateway.app_dir / "config.json").read_text()
    # The allow-list applies at once.
    assert api.chat("openai/gpt-4o-mini").status == 200
    refused = api.chat("openai/gpt-4o")
    assert refused.status == 400 and refused.body["error"]["code"] == "unknown_model"


def test_masked_inline_key_round_trips(api: Api, admin_gateway: Gateway) -> None:
    view = api.get("/api/providers/openai").body
    view["keys"].append({"name": "second-key", "value": "sk-fake-1", "weight": 2})
    assert api.put("/api/providers/openai", view).status == 200
    keys = read_config(admin_gateway)["providers"]["openai"]["keys"]
    assert [k["value"] for k in keys] == ["sk-fake-1", "sk-fake-1"]
    assert api.chat("openai/gpt-4o-mini").status == 200


def test_invalid_input_names_the_field_and_changes_nothing(api: Api, admin_gateway: Gateway) -> None:
    path = admin_gateway.app_dir / "config.json"
    before = path.read_bytes()
    view = api.get("/api/providers/openai").body
    view["keys"][0]["weight"] = -1
    bad = api.put("/api/providers/openai", view)
    assert bad.status == 400
    assert bad.body["error"]["param"] == "providers.openai.keys[0].weight"
    assert "zero or more" in bad.body["error"]["message"]  # weight 0 is valid, as in Go Bifrost (issue 9 item 18)
    bad_url = api.post(
        "/api/providers",
        {
            "name": "x",
            "custom_provider_config": {"base_provider_type": "openai"},
            "network_config": {"base_url": "ftp://nope"},
        },
    )
    assert bad_url.status == 400 and bad_url.body["error"]["param"] == "providers.x.network_config.base_url"
    assert api.post("/api/providers", {"name": "bad/name"}).status == 400
    assert api.post("/api/providers", {"name": "y", "colour": "red"}).status == 400
    unknown_type = api.post(
        "/api/providers",
        {
            "name": "z",
            "custom_provider_config": {"base_provider_type": "nope"},
            "network_config": {"base_url": "http://127.0.0.1:9"},
        },
    )
    assert unknown_type.status == 400 and "unknown provider type" in unknown_type.body["error"]["message"]
    assert path.read_bytes() == before
    assert api.chat("openai/gpt-4o-mini").status == 200


def test_delete(api: Api, admin_gateway: Gateway) -> None:
    assert api.delete("/api/providers/openai").status == 200
    assert "openai" not in read_config(admin_gateway)["providers"]
    gone = api.chat("openai/gpt-4o-mini")
    assert gone.status == 400 and gone.body["error"]["code"] == "unknown_provider"
    assert api.delete("/api/providers/openai").status == 404
    assert api.delete("/api/providers/mock").status == 400  # built in
    assert api.get("/api/providers/openai").status == 404


def test_test_button_reports_answer_and_error(api: Api, fake_openai: FakeOpenAI) -> None:
    ok = api.post("/api/providers/openai/test", {"model": "gpt-4o-mini", "prompt": "hello there"})
    assert ok.status == 200 and ok.body["ok"] is True, ok.text
    assert ok.body["answer"] == "fake-openai: hello there"
    fake_openai.enqueue(Reply.server_error(500))
    failed = api.post("/api/providers/openai/test", {"model": "gpt-4o-mini"})
    assert failed.body["ok"] is False and failed.body["status"] == 500
    assert failed.body["error"]["message"]
    mock = api.post("/api/providers/mock/test")
    assert mock.body["ok"] is True and mock.body["model"] == "mock-chat"


def test_client_settings(api: Api, admin_gateway: Gateway) -> None:
    assert api.get("/api/client").body["drop_excess_requests"] is False
    changed = api.put("/api/client", {"drop_excess_requests": True, "log_retention_days": 7})
    assert changed.status == 200, changed.text
    assert changed.body["drop_excess_requests"] is True and changed.body["restart_required"] == []
    assert read_config(admin_gateway)["client"]["log_retention_days"] == 7
    assert api.put("/api/client", {"enable_logging": False}).body["restart_required"] == ["enable_logging"]
    assert api.put("/api/client", {"enable_logging": True, "max_request_body_size_mb": 500}).body[
        "restart_required"
    ] == ["max_request_body_size_mb"]
    bad = api.put("/api/client", {"log_retention_days": "soon"})
    assert bad.status == 400 and bad.body["error"]["param"] == "client.log_retention_days"
    assert api.put("/api/client", {"colour": 1}).status == 400


def test_config_shows_profile_and_system_shows_lanes(api: Api) -> None:
    config = api.get("/api/config").body
    assert config["profile"] == config["tuning"]["profile"] and config["profile"]
    assert config["auth_required"] is False
    system = api.get("/api/system").body
    assert {lane["provider"] for lane in system["lanes"]} == {"mock", "openai"}
    assert all("in_flight" in lane and "queued" in lane for lane in system["lanes"])
    types = api.get("/api/provider-types").body["types"]
    assert any(t["name"] == "openai" for t in types)


def test_hand_edit_of_config_json_is_picked_up(api: Api, admin_gateway: Gateway, fake_openai_2: FakeOpenAI) -> None:
    import time

    path = admin_gateway.app_dir / "config.json"
    data = json.loads(path.read_text())
    data["providers"]["handmade"] = {
        **openai_provider(fake_openai_2.url, keys=("sk-fake-2",)),
        "custom_provider_config": {"base_provider_type": "openai"},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and api.get("/api/providers/handmade").status != 200:
        time.sleep(0.1)
    assert api.chat("handmade/gpt-4o-mini").status == 200

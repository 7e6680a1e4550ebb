"""Start-up from the environment: env.NAME secrets, providers detected from environment variables
with no config file, the keyless mock provider, BIFROST_* options, and signals."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from fakes import FakeOpenAI
from harness import StartGateway, free_port, make_config, openai_provider
from harness.process import spawn

MESSAGES = [{"role": "user", "content": "hi"}]


def test_env_secrets_in_config(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    provider = openai_provider("env.FAKE_UPSTREAM_URL", keys=["env.FAKE_UPSTREAM_KEY"])
    config = make_config({"openai": provider})
    gateway = start_gateway(config, env={"FAKE_UPSTREAM_URL": fake_openai.url, "FAKE_UPSTREAM_KEY": "sk-fake-1"})
    assert "sk-fake-1" not in (gateway.app_dir / "config.json").read_text()
    with gateway.client() as client:
        answer = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert answer.choices[0].message.content == "fake-openai: hi"
    assert fake_openai.requests[0].bearer == "sk-fake-1"


def test_providers_from_environment_without_config_file(start_gateway: StartGateway, tmp_path: Path) -> None:
    app_dir = tmp_path / "empty-app"
    gateway = start_gateway(env={"OPENAI_API_KEY": "sk-fake-from-env"}, app_dir=app_dir)
    with gateway.client() as client:
        ids = [m.id for m in client.models.list()]
    assert any(i.startswith("openai/") for i in ids), ids


def test_no_openai_without_key(start_gateway: StartGateway, tmp_path: Path) -> None:
    gateway = start_gateway(app_dir=tmp_path / "bare")
    with gateway.client() as client:
        ids = [m.id for m in client.models.list()]
    assert not any(i.startswith("openai/") for i in ids), ids


def test_mock_provider_needs_no_key(start_gateway: StartGateway, tmp_path: Path) -> None:
    gateway = start_gateway(app_dir=tmp_path / "mock-app")
    with gateway.client() as client:
        first = client.chat.completions.create(model="mock/demo", messages=MESSAGES)
        second = client.chat.completions.create(model="mock/demo", messages=MESSAGES)
        chunks = list(client.chat.completions.create(model="mock/demo", messages=MESSAGES, stream=True))
    assert first.choices[0].message.content
    assert first.choices[0].message.content == second.choices[0].message.content, "mock answers deterministically"
    assert chunks and chunks[-1].choices[0].finish_reason is not None


def test_mock_alongside_configured_providers(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url)}))
    with gateway.client() as client:
        answer = client.chat.completions.create(model="mock/demo", messages=MESSAGES)
    assert answer.choices[0].message.content
    assert fake_openai.requests == []


def test_bare_command_with_bifrost_env_options(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    app_dir = tmp_path / "env-app"
    app_dir.mkdir()
    (app_dir / "config.json").write_text(json.dumps(make_config({"openai": openai_provider(fake_openai.url)})))
    port = free_port()
    env = {"BIFROST_HOST": "127.0.0.1", "BIFROST_PORT": str(port), "BIFROST_APP_DIR": str(app_dir)}
    gateway = spawn(app_dir, env=env, port=port, command=[sys.executable, "-m", "bifrost_cli"])
    try:
        gateway.wait_healthy()
        with gateway.client() as client:
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
        assert gateway.stop(signal.SIGTERM) == 0
        assert (app_dir / "logs.db").exists(), "BIFROST_APP_DIR chooses where the request log lives"
        assert len(gateway.log.rows()) == 1
    finally:
        gateway.kill()


def test_sigint_exits_zero(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url)}))
    with gateway.client() as client:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert gateway.stop(signal.SIGINT) == 0
    assert "Traceback" not in gateway.output()
    assert len(gateway.log.rows()) == 1


def test_banner_names_address_and_app_dir(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url)}))
    gateway.stop()
    text = gateway.output()
    assert f"127.0.0.1:{gateway.port}" in text
    assert "openai" in text

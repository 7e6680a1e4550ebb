"""Issue 9 item 8: validation messages name an `env.NAME` reference, never its value; and the
environment is read only in the fields that hold secrets or addresses.

Rule (documented in runtime/config/load.py): `env.NAME` is read in a key's `value`, every field of its
credential block (azure_key_config, bedrock_key_config, vertex_key_config),
`network_config.base_url` and the values of `network_config.extra_headers`. Anywhere else (numbers,
flags, names, client settings) it is an error that names the reference.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeOpenAI
from harness import StartGateway, make_config, openai_provider

from runtime.config.load import ConfigError, load_gateway_config

SECRET = "hunter2-SECRET-do-not-echo"


def load(tmp_path: Path, doc: Any, environ: dict[str, str]) -> Any:
    (tmp_path / "config.json").write_text(json.dumps(doc))
    return load_gateway_config(tmp_path, environ=environ)


def provider(network: dict[str, Any] | None = None, key: dict[str, Any] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"keys": [{"name": "k", "value": "sk-fake", "weight": 1, **(key or {})}]}
    entry["network_config"] = {"base_url": "http://127.0.0.1:9", **(network or {})}
    return {"providers": {"openai": entry}}


def assert_hidden(exc: pytest.ExceptionInfo[ConfigError], reference: str) -> None:
    text = str(exc.value)
    assert reference in text, text
    assert SECRET not in text, text


def test_base_url_from_env_that_is_not_a_url_names_the_reference(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, provider({"base_url": "env.X"}), {"X": SECRET})
    assert exc.value.path == "providers.openai.network_config.base_url"
    assert_hidden(exc, "env.X")


def test_base_url_from_env_is_read_when_valid(tmp_path: Path) -> None:
    cfg = load(tmp_path, provider({"base_url": "env.X"}), {"X": "http://127.0.0.1:5555/"})
    assert cfg.providers["openai"].network.base_url == "http://127.0.0.1:5555"


@pytest.mark.parametrize(
    ("network", "key", "path"),
    [
        ({"max_retries": "env.X"}, None, "providers.openai.network_config.max_retries"),
        ({"default_request_timeout_in_seconds": "env.X"}, None, "network_config.default_request_timeout_in_seconds"),
        (None, {"weight": "env.X"}, "providers.openai.keys[0].weight"),
    ],
)
def test_numbers_and_other_fields_do_not_read_the_environment(
    tmp_path: Path, network: dict[str, Any] | None, key: dict[str, Any] | None, path: str
) -> None:
    for value in (SECRET, "7"):  # a numeric value must not be read either: the field is not an env field
        with pytest.raises(ConfigError) as exc:
            load(tmp_path, provider(network, key), {"X": value})
        assert path in exc.value.path
        assert_hidden(exc, "env.X")
        assert "are read only in" in str(exc.value)


def test_other_text_fields_take_env_literally(tmp_path: Path) -> None:
    cfg = load(tmp_path, provider(key={"name": "env.X"}), {"X": SECRET})
    assert cfg.providers["openai"].keys[0].name == "env.X"  # a label, not a secret: never resolved


def test_client_settings_do_not_read_the_environment(tmp_path: Path) -> None:
    doc = {**provider(), "client": {"initial_pool_size": "env.X"}}
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, doc, {"X": SECRET})
    assert exc.value.path == "client.initial_pool_size"
    assert_hidden(exc, "env.X")


def test_azure_endpoint_from_env_that_is_not_a_url_names_the_reference(tmp_path: Path) -> None:
    doc = {
        "providers": {
            "azure": {
                "keys": [
                    {
                        "name": "a",
                        "value": "env.K",
                        "weight": 1,
                        "azure_key_config": {"endpoint": "env.X", "api_version": "env.V"},
                    }
                ]
            }
        }
    }
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, doc, {"X": SECRET, "K": "k", "V": "2024-10-21"})
    assert_hidden(exc, "env.X")
    cfg = load(tmp_path, doc, {"X": "https://r.openai.azure.com", "K": "k", "V": "2024-10-21"})
    assert cfg.providers["azure"].keys[0].azure.api_version == "2024-10-21"


def test_header_value_from_env_with_a_line_break_names_the_reference(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, provider({"extra_headers": {"X-Team": "env.X"}}), {"X": SECRET + "\r\nEvil: 1"})
    assert_hidden(exc, "env.X")
    cfg = load(tmp_path, provider({"extra_headers": {"X-Team": "env.X"}}), {"X": "blue"})
    assert cfg.providers["openai"].network.extra_headers["X-Team"] == "blue"


def test_credential_blocks_read_the_environment(tmp_path: Path) -> None:
    doc = {
        "providers": {
            "bedrock": {
                "keys": [
                    {
                        "name": "b",
                        "weight": 1,
                        "bedrock_key_config": {"access_key": "env.A", "secret_key": "env.S", "region": "env.R"},
                    }
                ]
            }
        }
    }
    cfg = load(tmp_path, doc, {"A": "AKIAFAKE", "S": SECRET, "R": "eu-west-1"})
    block = cfg.providers["bedrock"].keys[0].extra["bedrock_key_config"]
    assert block["secret_key"] == SECRET and block["region"] == "eu-west-1"


def test_config_show_masks_credential_blocks(tmp_path: Path) -> None:
    doc = {
        "providers": {
            "bedrock": {
                "keys": [
                    {
                        "name": "b",
                        "weight": 1,
                        "bedrock_key_config": {"access_key": "env.A", "secret_key": "env.S", "region": "eu-west-1"},
                    }
                ]
            }
        }
    }
    (tmp_path / "config.json").write_text(json.dumps(doc))
    repo = Path(__file__).resolve().parents[2]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo), "HOME": str(tmp_path), "A": "AKIAFAKE", "S": SECRET}
    shown = subprocess.run(
        [sys.executable, "-m", "bifrost_cli", "config", "show", "--app-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=repo,
        env=env,
    )
    assert shown.returncode == 0, shown.stderr
    assert SECRET not in shown.stdout + shown.stderr
    assert "eu-west-1" in shown.stdout


def _post(url: str, body: Any) -> tuple[int, str]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_admin_api_never_echoes_an_env_value(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url)}), env={"X": SECRET, "N": "12"})
    custom = {"custom_provider_config": {"base_provider_type": "openai"}}
    key = [{"name": "k", "value": "sk-fake-2", "models": [], "weight": 1}]
    cases = [
        ({"name": "p1", **custom, "keys": key, "network_config": {"base_url": "env.X"}}, "base_url"),
        (
            {
                "name": "p2",
                **custom,
                "keys": key,
                "network_config": {"base_url": fake_openai.url, "max_retries": "env.N"},
            },
            "max_retries",
        ),
        (
            {
                "name": "p3",
                **custom,
                "keys": [{**key[0], "weight": "env.X"}],
                "network_config": {"base_url": fake_openai.url},
            },
            "weight",
        ),
    ]
    for body, field in cases:
        status, text = _post(gateway.url("/api/providers"), body)
        assert status == 400, text
        assert SECRET not in text and "12" not in json.loads(text)["error"]["message"], text
        assert "env." in text and field in text, text

"""config.json validation: field paths in errors, env.NAME secrets, env detection, defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.config.load import ConfigError, load_gateway_config


def write(tmp_path: Path, data: object) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(data) if not isinstance(data, str) else data)
    return tmp_path


def test_error_names_the_field_path(tmp_path: Path) -> None:
    app = write(tmp_path, {"providers": {"openai": {"keys": [{"value": "k", "weight": "heavy"}]}}})
    with pytest.raises(ConfigError) as exc:
        load_gateway_config(app, environ={})
    assert str(exc.value).startswith("providers.openai.keys[0].weight: expected a number")


def test_bad_json_reports_line_and_column(tmp_path: Path) -> None:
    app = write(tmp_path, '{"providers": {,}}')
    with pytest.raises(ConfigError, match=r"not valid JSON: .* line 1 column"):
        load_gateway_config(app, environ={})


def test_env_references_are_resolved_and_missing_ones_named(tmp_path: Path) -> None:
    app = write(tmp_path, {"providers": {"openai": {"keys": [{"name": "k", "value": "env.MY_KEY"}]}}})
    cfg = load_gateway_config(app, environ={"MY_KEY": "sk-test"})
    assert cfg.providers["openai"].keys[0].value == "sk-test"
    assert cfg.raw["providers"]["openai"]["keys"][0]["value"] == "env.MY_KEY"  # type: ignore[index]
    # issue 9 item 18: an unset variable skips the key (as Go Bifrost does) and says which, instead of stopping.
    cfg = load_gateway_config(app, environ={})
    assert cfg.providers["openai"].keys == ()
    assert cfg.providers["openai"].missing_env == ("MY_KEY",)
    assert any("providers.openai.keys[0]" in w and "MY_KEY" in w for w in cfg.warnings), cfg.warnings


def test_unknown_provider_needs_custom_config(tmp_path: Path) -> None:
    app = write(tmp_path, {"providers": {"acme": {"keys": []}}})
    with pytest.raises(ConfigError, match=r"providers\.acme: unknown provider"):
        load_gateway_config(app, environ={})
    app = write(
        tmp_path,
        {
            "providers": {
                "acme": {
                    "custom_provider_config": {"base_provider_type": "openai"},
                    "network_config": {"base_url": "http://127.0.0.1:9"},
                }
            }
        },
    )
    cfg = load_gateway_config(app, environ={})
    assert cfg.providers["acme"].kind == "openai"
    assert cfg.providers["acme"].network.base_url == "http://127.0.0.1:9"


def test_providers_come_from_environment_without_a_file(tmp_path: Path) -> None:
    cfg = load_gateway_config(tmp_path, environ={"OPENAI_API_KEY": "sk-x", "GROQ_API_KEY": "gsk"})
    assert set(cfg.providers) == {"openai", "groq", "mock"}
    assert cfg.providers["openai"].network.base_url == "https://api.openai.com"


def test_backoff_aliases_and_defaults(tmp_path: Path) -> None:
    app = write(
        tmp_path,
        {
            "providers": {
                "openai": {
                    "keys": [{"value": "k"}],
                    "network_config": {"retry_backoff_initial": 50, "retry_backoff_max": 400, "max_retries": 2},
                }
            }
        },
    )
    net = load_gateway_config(app, environ={}).providers["openai"].network
    assert (net.retry_backoff_initial_ms, net.retry_backoff_max_ms, net.max_retries) == (50, 400, 2)
    app = write(tmp_path, {"providers": {"openai": {"keys": [{"value": "k"}], "network_config": {}}}})
    net = load_gateway_config(app, environ={}).providers["openai"].network
    assert net.retry_backoff_initial_ms == 500


@pytest.mark.parametrize(
    ("client", "path"),
    [
        ({"drop_excess_requests": "yes"}, "client.drop_excess_requests"),
        ({"max_request_body_size_mb": 0}, "client.max_request_body_size_mb"),
        ({"initial_pool_size": True}, "client.initial_pool_size"),
    ],
)
def test_client_block_is_validated(tmp_path: Path, client: dict, path: str) -> None:
    app = write(tmp_path, {"client": client})
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
        load_gateway_config(app, environ={})

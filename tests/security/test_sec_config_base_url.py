"""Issue 9 item 9: provider base URLs may not target cloud metadata, link-local or hidden hosts.

One rule (runtime/config/urls.py) serves the file loader and the admin API: link-local and metadata
addresses and names, userinfo, control characters and spaces, non-http(s) schemes and IPv4 in odd
notations are refused; private and loopback addresses are allowed unless
`client.allow_private_base_urls` is false.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeOpenAI
from harness import StartGateway, make_config, openai_provider

from runtime.config.load import ConfigError, load_gateway_config
from runtime.config.urls import UnsafeURL, check_base_url

REFUSED = [
    "http://169.254.169.254/latest/meta-data",
    "http://169.254.170.2/v2/credentials",
    "http://169.254.1.1",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://[fd00:ec2::254]/",
    "http://100.100.100.200/latest/meta-data",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[64:ff9b::169.254.169.254]/",
    "http://2852039166/",
    "http://0xA9FEA9FE/",
    "http://0251.0376.0251.0376/",
    "http://0xa9.254.43518/",
    "http://169.254.43518/",
    "http://metadata.google.internal/computeMetadata/v1",
    "http://METADATA.google.internal./",
    "http://metadata/",
    "http://metadata.goog/",
    "http://instance-data/latest",
    "http://\uff4detadata.google.internal/",  # full-width m: IDNA folds it to "metadata"
    "http://user:pass@api.example.com",
    "http://api.example.com@169.254.169.254/",
    "http://api.example.com/v1\r\nX-Evil: 1",
    "http://api.example.com/\n",
    "http://api.example.com/ v1",
    "http://api.example.com/\t",
    "http://api.example.com/\x00",
    "ftp://api.example.com",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_",
    "api.example.com",
    "http://",
    "http://0.0.0.0:8000",
    "http://[::]:8000",
    "http://224.0.0.1",
    "http://api.example.com:99999",
    "http://api.example.com/?x=1",
    "http://api.example.com/#frag",
    "http://010.0.0.1/",
]
ALLOWED = [
    "https://api.openai.com",
    "https://api.openai.com/v1/",
    "http://localhost:11434",
    "http://127.0.0.1:8000",
    "http://[::1]:8000",
    "http://10.0.0.5:8000",
    "http://192.168.1.20",
    "http://172.16.0.9:30000",
    "http://100.64.0.1",
    "http://host.docker.internal:11434",
    "https://my-resource.openai.azure.com",
    "https://bedrock-runtime.{region}.amazonaws.com",
    "http://8.8.8.8",
]
PRIVATE = [
    "http://localhost:11434",
    "http://api.localhost",
    "http://127.0.0.1:8000",
    "http://[::1]:8000",
    "http://10.0.0.5:8000",
    "http://192.168.1.20",
    "http://100.64.0.1",
    "http://[fd12::1]",
    "http://[::ffff:127.0.0.1]",
]


@pytest.mark.parametrize("url", REFUSED)
def test_refused(url: str) -> None:
    with pytest.raises(UnsafeURL):
        check_base_url(url)


@pytest.mark.parametrize("url", ALLOWED)
def test_allowed(url: str) -> None:
    assert check_base_url(url) == url.rstrip("/")


@pytest.mark.parametrize("url", PRIVATE)
def test_private_refused_when_switched_off(url: str) -> None:
    assert check_base_url(url, allow_private=True)
    with pytest.raises(UnsafeURL, match="allow_private_base_urls"):
        check_base_url(url, allow_private=False)


def _doc(url: str, allow_private: bool | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "providers": {
            "openai": {"keys": [{"name": "k", "value": "sk-fake", "weight": 1}], "network_config": {"base_url": url}}
        }
    }
    if allow_private is not None:
        doc["client"] = {"allow_private_base_urls": allow_private}
    return doc


@pytest.mark.parametrize("url", [*REFUSED[:24:3], "http://user:pass@h.example.com", "http://h.example.com/\r\n"])
def test_the_loader_refuses_with_the_field_path(tmp_path: Path, url: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps(_doc(url)))
    with pytest.raises(ConfigError) as exc:
        load_gateway_config(tmp_path, environ={})
    assert exc.value.path == "providers.openai.network_config.base_url"
    assert ":pass@" not in str(exc.value)  # userinfo holds a password: never echoed


def test_the_loader_follows_allow_private_base_urls(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(_doc("http://127.0.0.1:9", allow_private=False)))
    with pytest.raises(ConfigError, match="allow_private_base_urls"):
        load_gateway_config(tmp_path, environ={})
    (tmp_path / "config.json").write_text(json.dumps(_doc("http://127.0.0.1:9")))
    assert load_gateway_config(tmp_path, environ={}).providers["openai"].network.base_url == "http://127.0.0.1:9"


def test_azure_endpoint_follows_the_same_rule(tmp_path: Path) -> None:
    doc = {
        "providers": {
            "azure": {
                "keys": [
                    {
                        "name": "a",
                        "value": "k",
                        "weight": 1,
                        "azure_key_config": {"endpoint": "http://169.254.169.254", "api_version": "2024-10-21"},
                    }
                ]
            }
        }
    }
    (tmp_path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as exc:
        load_gateway_config(tmp_path, environ={})
    assert exc.value.path == "providers.azure.keys[0].azure_key_config.endpoint"


def _post(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def test_admin_api_refuses_the_same_urls(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url)}))
    refused = [
        "http://169.254.169.254/",
        "http://metadata.google.internal/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
        "http://2852039166/",
        "http://user:pass@example.com/",
        "http://example.com/\r\nX-Evil: 1",
        "http://100.100.100.200/",
    ]
    for i, url in enumerate(refused):
        body = {
            "name": f"bad{i}",
            "custom_provider_config": {"base_provider_type": "openai"},
            "keys": [{"name": "k", "value": "sk-fake-2", "models": [], "weight": 1}],
            "network_config": {"base_url": url},
        }
        status, answer = _post(gateway.url("/api/providers"), body)
        assert status == 400, (url, answer)
        assert "base_url" in json.dumps(answer), answer
    ok_body = {
        "name": "local",
        "custom_provider_config": {"base_provider_type": "openai"},
        "keys": [{"name": "k", "value": "sk-fake-2", "models": [], "weight": 1}],
        "network_config": {"base_url": fake_openai.url},
    }
    status, answer = _post(gateway.url("/api/providers"), ok_body)
    assert status == 201, answer

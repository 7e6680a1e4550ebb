"""Fixtures for the cache admin tests: a gateway process (with or without the `semantic_cache` plugin)
whose "openai" is a priced fake, and a small JSON client for /api."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeOpenAI, Reply
from harness import Gateway, StartGateway, make_config, openai_provider

USAGE = {"prompt_tokens": 7, "completion_tokens": 11, "total_tokens": 18}
PRICE_IN, PRICE_OUT = 0.001, 0.002  # dollars per token: 7 * 0.001 + 11 * 0.002 = $0.029 a request
COST = 0.029
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def cache_config(fake_url: str, cache: Mapping[str, Any] | None, enabled: bool = True) -> dict[str, Any]:
    """config.json: "openai" is the fake, priced; with `cache`, a semantic_cache plugin entry."""
    provider = openai_provider(fake_url)
    provider["pricing_overrides"] = [
        {
            "model_pattern": "*",
            "match_type": "wildcard",
            "input_cost_per_token": PRICE_IN,
            "output_cost_per_token": PRICE_OUT,
        }
    ]
    config = make_config({"openai": provider})
    if cache is not None:
        config["plugins"] = [{"name": "semantic_cache", "enabled": enabled, "config": dict(cache)}]
    return config


StartCache = Callable[..., Gateway]


@pytest.fixture
def start_cache_gateway(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> StartCache:
    """start(cache settings or None, enabled=True, config=None, app_dir=None, fresh=True, **kw) -> Gateway."""
    fake_openai.always(Reply(usage=USAGE))

    def start(
        cache: Mapping[str, Any] | None = None,
        *,
        enabled: bool = True,
        config: Mapping[str, Any] | None = None,
        app_dir: Path | None = None,
        fresh: bool = True,
        **kwargs: Any,
    ) -> Gateway:
        """fresh=False: start on the config.json already in `app_dir` (a restart)."""
        document = None if not fresh else (config or cache_config(fake_openai.url, cache, enabled))
        return start_gateway(document, app_dir=app_dir, **kwargs)

    return start


def call(
    gw: Gateway, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None
) -> tuple[int, Any]:
    """(status, parsed JSON or text) for one admin call; HTTP errors are answers, not exceptions."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(gw.base_url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        request.add_header(k, v)
    try:
        with _OPENER.open(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as err:
        with err:
            status, raw = err.code, err.read()
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


def metrics_text(gw: Gateway) -> str:
    with _OPENER.open(gw.base_url + "/metrics", timeout=30) as response:
        return str(response.read().decode())

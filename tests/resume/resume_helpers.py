"""Config and reading helpers for the mid-stream recovery tests."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import anthropic
from harness import Gateway, custom_provider, make_config, openai_provider, read_sse
from harness.config import DEFAULT_NETWORK
from harness.process import CLIENT_KEY

Json = dict[str, Any]

# The answer every fake gives; the primary breaks after its role chunk and two words ("Alpha beta ").
FULL = "Alpha beta gamma delta epsilon zeta"
DELIVERED = "Alpha beta "
MESSAGES = [{"role": "user", "content": "Hello there"}]
PRICES = {  # US dollars per token, so the log row's cost can be checked against each attempt's usage
    "openai": (0.001, 0.002),
    "anthropic": (0.003, 0.004),
    "backup": (0.005, 0.006),
}


def _priced(provider: Json, name: str) -> Json:
    rate_in, rate_out = PRICES[name]
    provider["pricing_overrides"] = [
        {
            "model_pattern": "*",
            "match_type": "wildcard",
            "input_cost_per_token": rate_in,
            "output_cost_per_token": rate_out,
        }
    ]
    return provider


def anthropic_provider(base_url: str, **extra: Any) -> Json:
    keys = [{"name": "ant", "value": "sk-ant-fake-1", "models": [], "weight": 1}]
    return {"keys": keys, "network_config": {"base_url": base_url, **DEFAULT_NETWORK}, **extra}


def config(
    openai_url: str,
    *,
    anthropic_url: str | None = None,
    backup_url: str | None = None,
    primary: Json | None = None,
    **client: Any,
) -> Json:
    providers: Json = {"openai": _priced(primary or openai_provider(openai_url), "openai")}
    if anthropic_url is not None:
        providers["anthropic"] = _priced(anthropic_provider(anthropic_url), "anthropic")
    if backup_url is not None:
        providers["backup"] = _priced(custom_provider(backup_url, keys=("sk-fake-2",)), "backup")
    return make_config(providers, **client)


async def stream_raw(gateway: Gateway, body: Json, headers: dict[str, str] | None = None) -> tuple[list[Any], str]:
    """POST a chat stream with aiohttp; (the SSE events, the request id)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(gateway.url("/v1/chat/completions"), json=body, headers=headers or {}) as resp,
    ):
        assert resp.status == 200
        events, _ = await read_sse(resp)
        return events, resp.headers["x-request-id"]


def text_of(events: list[Any]) -> str:
    out = []
    for event in events:
        if event.is_done or event.is_error:
            continue
        for choice in event.json().get("choices") or ():
            out.append(choice.get("delta", {}).get("content") or "")
    return "".join(out)


def attempts_of(row: Any) -> list[Json]:
    value = row["attempts"]
    return json.loads(value) if isinstance(value, str) else list(value or [])


def anthropic_client(gateway: Gateway) -> anthropic.Anthropic:
    """The anthropic SDK pointed at the gateway's /anthropic ingress, without SDK-side retries."""
    return anthropic.Anthropic(
        base_url=gateway.base_url + "/anthropic", api_key=CLIENT_KEY, max_retries=0, timeout=60.0
    )

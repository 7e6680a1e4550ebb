"""Config builders and SDK clients for the native-provider tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
from typing import Any

import anthropic
from google import genai
from google.genai import types
from harness import Gateway
from harness.config import DEFAULT_NETWORK
from harness.process import CLIENT_KEY

Json = dict[str, Any]

MESSAGES = [{"role": "user", "content": "Hello there"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TWO_CALLS = (
    {"id": "call_a1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
    {"id": "call_b2", "name": "get_weather", "arguments": '{"city": "Tokyo"}'},
)
# A 1x1 transparent PNG.
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
PNG_DATA_URL = f"data:image/png;base64,{PNG_B64}"


def native_provider(base_url: str, keys: list[Json], **network: Any) -> Json:
    return {"keys": keys, "network_config": {"base_url": base_url, **DEFAULT_NETWORK, **network}}


def anthropic_provider(base_url: str, key: str = "sk-ant-fake-1", **network: Any) -> Json:
    return native_provider(base_url, [{"name": "ant", "value": key, "models": [], "weight": 1}], **network)


def gemini_provider(base_url: str, key: str = "gemini-fake-key", **network: Any) -> Json:
    return native_provider(base_url, [{"name": "gem", "value": key, "models": [], "weight": 1}], **network)


def genai_client(gateway: Gateway) -> genai.Client:
    """The google-genai SDK pointed at the gateway's /genai ingress, without SDK-side retries."""
    options = types.HttpOptions(
        base_url=gateway.base_url + "/genai", timeout=60_000, retry_options=types.HttpRetryOptions(attempts=1)
    )
    return genai.Client(api_key=CLIENT_KEY, http_options=options)


def anthropic_client(gateway: Gateway, **kwargs: Any) -> anthropic.Anthropic:
    options: dict[str, Any] = {"api_key": CLIENT_KEY, "max_retries": 0, "timeout": 60.0}
    options.update(kwargs)
    return anthropic.Anthropic(base_url=gateway.base_url + "/anthropic", **options)


def collect_tool_calls(chunks: list[Any]) -> dict[int, dict[str, str]]:
    """Fold OpenAI SDK stream chunks' tool-call deltas the way a client does: by index."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or ():
                entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                if delta.id:
                    entry["id"] = delta.id
                if delta.function and delta.function.name:
                    entry["name"] += delta.function.name
                if delta.function and delta.function.arguments:
                    entry["arguments"] += delta.function.arguments
    return calls


def stream_text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def finish_reason(chunks: list[Any]) -> str | None:
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(reasons) == 1, f"expected exactly one finish_reason, got {reasons}"
    return reasons[0]


BEDROCK_KEY = {"access_key": "AKIAFAKEEXAMPLE", "secret_key": "fake/secret+key", "region": "us-west-2"}


def bedrock_provider(base_url: str, **network: Any) -> Json:
    key = {"name": "aws", "value": "", "models": [], "weight": 1, "bedrock_key_config": dict(BEDROCK_KEY)}
    return native_provider(base_url, [key], **network)


def vertex_provider(
    base_url: str, service_account: dict[str, Any], *, region: str = "us-central1", **network: Any
) -> Json:
    """Vertex AI with a service-account key (as a JSON string, the way it is usually pasted in)."""
    key = {
        "name": "sa",
        "value": "",
        "models": [],
        "weight": 1,
        "vertex_key_config": {
            "project_id": "fake-project",
            "region": region,
            "auth_credentials": json.dumps(service_account),
        },
    }
    return native_provider(base_url, [key], **network)


def cohere_provider(base_url: str, key: str = "co-fake-key", **network: Any) -> Json:
    return native_provider(base_url, [{"name": "co", "value": key, "models": [], "weight": 1}], **network)

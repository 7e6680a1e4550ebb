"""Google Vertex AI: Gemini models, Claude models (Anthropic's format via rawPredict) and text embeddings.

    {base}/v1/projects/{project}/locations/{region}/publishers/google/models/{m}:generateContent
                                                                      :streamGenerateContent?alt=sse
                                                                      :countTokens | :predict (embeddings)
    {base}/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{m}:rawPredict
                                                                          :streamRawPredict

Keys carry `vertex_key_config` (Go Bifrost's fields): project_id, region, auth_credentials (a
service-account key, JSON string or object). Requests get an OAuth bearer token from google_auth in
`sign`; a key without auth_credentials may put a ready access token in `value`. Models whose name starts
with "claude" are Anthropic's; everything else is Google's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import ujson

from runtime.config.model import KeyConfig, ProviderConfig
from runtime.errors import GatewayError, ProviderError, UpstreamGarbage
from runtime.providers import anthropic_wire
from runtime.providers import gemini_request as gemini
from runtime.providers import gemini_response as gemini_out
from runtime.providers.anthropic import AnthropicAdapter
from runtime.providers.base import EMBEDDINGS, AdapterBase, ParsedResponse, StreamTranslator, UpstreamRequest, Usage
from runtime.providers.capabilities import COUNT_TOKENS, operations_for
from runtime.providers.common import embeddings_list, error_body, input_texts, loads_object, path_segment
from runtime.providers.gemini import google_error, parse_count
from runtime.providers.google_auth import TokenCache, service_account
from runtime.providers.registry import ProviderSpec, join_base

ANTHROPIC_VERSION = "vertex-2023-10-16"
DEFAULT_REGION = "us-central1"


def key_config(key: KeyConfig) -> Mapping[str, Any]:
    config = key.extra.get("vertex_key_config")
    return config if isinstance(config, Mapping) else {}


def is_claude(model: str) -> bool:
    return model.startswith("claude")


def base_url(provider: ProviderConfig, region: str) -> str:
    base = provider.network.base_url or ""
    if region == "global" and "{region}-" in base:
        return base.replace("{region}-", "")  # the global endpoint has no region in its host
    return base.replace("{region}", region)


class VertexAdapter(AdapterBase):
    kind = "vertex"
    operations = operations_for("vertex")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock  # `created` stamps; token expiry lives in the TokenCache
        self.tokens = TokenCache()

    def build_request(
        self,
        provider: ProviderConfig,
        spec: ProviderSpec,
        op: str,
        body: dict[str, Any],
        model: str,
        key: KeyConfig,
        stream: bool,
    ) -> UpstreamRequest:
        config = key_config(key)
        project = config.get("project_id")
        if not project:
            raise GatewayError(
                f"vertex key '{key.name}' needs vertex_key_config.project_id",
                status=500,
                type="configuration_error",
                code="missing_project",
            )
        region = str(config.get("region") or DEFAULT_REGION)
        base = join_base(base_url(provider, region), spec.path_prefix)
        root = f"{base}/projects/{project}/locations/{region}/publishers"
        headers = {"Content-Type": "application/json"}
        if provider.network.extra_headers:
            headers.update(provider.network.extra_headers)
        if is_claude(model):
            if op == COUNT_TOKENS:
                payload = anthropic_wire.build_messages_body(body, model, False, counting=True)
                payload["anthropic_version"] = ANTHROPIC_VERSION
                return UpstreamRequest("POST", f"{root}/anthropic/models/count-tokens:rawPredict", headers, payload)
            payload = anthropic_wire.build_messages_body(
                body, None, stream, AnthropicAdapter.default_max_tokens(provider)
            )
            payload["anthropic_version"] = ANTHROPIC_VERSION
            method = "streamRawPredict" if stream else "rawPredict"
            url = f"{root}/anthropic/models/{path_segment(model)}:{method}"
            return UpstreamRequest("POST", url, headers, payload)
        url = f"{root}/google/models/{path_segment(model)}"
        if op == EMBEDDINGS:
            instances = [
                {"content": text, **({"task_type": body["task_type"]} if body.get("task_type") else {})}
                for text in input_texts(body)
            ]
            payload = {"instances": instances}
            if body.get("dimensions"):
                payload["parameters"] = {"outputDimensionality": body["dimensions"]}
            return UpstreamRequest("POST", f"{url}:predict", headers, payload)
        if op == COUNT_TOKENS:
            return UpstreamRequest("POST", f"{url}:countTokens", headers, gemini.build_count_body(body, None))
        payload = gemini.build_generate_body(body)
        return UpstreamRequest(
            "POST", f"{url}:streamGenerateContent?alt=sse" if stream else f"{url}:generateContent", headers, payload
        )

    async def sign(
        self, request: UpstreamRequest, key: KeyConfig, provider: ProviderConfig, session: aiohttp.ClientSession | None
    ) -> None:
        credentials = key_config(key).get("auth_credentials")
        if credentials:
            info = service_account(credentials, f"vertex key '{key.name}'")
            request.headers["Authorization"] = f"Bearer {await self.tokens.token(info, session)}"
        elif key.value:
            request.headers["Authorization"] = f"Bearer {key.value}"  # a ready OAuth access token
        else:
            raise GatewayError(
                f"vertex key '{key.name}' has no vertex_key_config.auth_credentials and no access token in 'value'",
                status=500,
                type="configuration_error",
                code="missing_credentials",
            )

    def parse_response(self, op: str, model: str, raw: bytes) -> ParsedResponse:
        created = int(self.clock())
        if op == COUNT_TOKENS:
            if is_claude(model):
                data = loads_object(raw, "Vertex count-tokens response")
                return ParsedResponse(
                    {"object": "token_count", "input_tokens": int(data.get("input_tokens") or 0)}, None
                )
            return parse_count(raw)
        if op == EMBEDDINGS:
            return _parse_predict(raw, model)
        if is_claude(model):
            answer, usage = anthropic_wire.parse_message(raw, model, created)
        else:
            answer, usage = gemini_out.parse_generate(raw, model, created)
        return ParsedResponse(answer, usage)

    def stream_translator(self, op: str, model: str) -> StreamTranslator:
        created = int(self.clock())
        if is_claude(model):
            return anthropic_wire.MessagesStream(model, created)
        return gemini_out.GenerateStream(model, created)

    def parse_error(self, status: int, headers: Mapping[str, str], raw: bytes) -> ProviderError:
        body = error_body(raw)
        if isinstance(body, dict) and body.get("type") == "error":  # Claude on Vertex answers in Anthropic's shape
            return anthropic_wire.error_from_body(status, body, headers)
        if isinstance(body, list) and body and isinstance(body[0], dict):
            raw = ujson.dumps(body[0]).encode()  # some Vertex errors come wrapped in a one-element list
        return google_error(status, headers, raw, "Vertex AI")


def _parse_predict(raw: bytes, model: str) -> ParsedResponse:
    data = loads_object(raw, "Vertex embeddings response")
    predictions = data.get("predictions")
    if not isinstance(predictions, list):
        raise UpstreamGarbage(f"Vertex embeddings response has no predictions: {raw[:120]!r}")
    vectors, tokens = [], 0
    for prediction in predictions:
        embeddings = (prediction or {}).get("embeddings") or {}
        vectors.append(embeddings.get("values") or [])
        tokens += int((embeddings.get("statistics") or {}).get("token_count") or 0)
    return ParsedResponse(embeddings_list(model, vectors, tokens), Usage(tokens, 0))

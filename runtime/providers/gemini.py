"""Google Gemini through the Generative Language API, keyed with `x-goog-api-key`:

    POST {base}/v1beta/models/{model}:generateContent
    POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse
    POST {base}/v1beta/models/{model}:batchEmbedContents
    POST {base}/v1beta/models/{model}:countTokens

Translation lives in gemini_request / gemini_response (Vertex AI reuses both).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from runtime.config.model import KeyConfig, ProviderConfig
from runtime.errors import ProviderError
from runtime.providers import gemini_request as request
from runtime.providers import gemini_response as response
from runtime.providers.base import EMBEDDINGS, AdapterBase, ParsedResponse, UpstreamRequest
from runtime.providers.capabilities import COUNT_TOKENS, operations_for
from runtime.providers.common import error_body, loads_object, path_segment, raw_text
from runtime.providers.openai import retry_after_seconds
from runtime.providers.registry import ProviderSpec, join_base

_COLLECTIONS = ("models/", "tunedModels/")


def model_path(model: str) -> str:
    """The model's resource name as the request BODY names it (`models/x`, `tunedModels/x`)."""
    return model if model.startswith(_COLLECTIONS) else f"models/{model}"


def model_url_path(model: str) -> str:
    """The same resource name for the URL: the collection, then the id as one encoded path segment,
    so no model string can reach another path, method (`:x`) or query."""
    for collection in _COLLECTIONS:
        if model.startswith(collection):
            return collection + path_segment(model[len(collection) :])
    return "models/" + path_segment(model)


def parse_count(raw: bytes) -> ParsedResponse:
    data = loads_object(raw, "countTokens response")
    return ParsedResponse({"object": "token_count", "input_tokens": int(data.get("totalTokens") or 0)}, None)


def google_error(status: int, headers: Mapping[str, str], raw: bytes, label: str) -> ProviderError:
    body = error_body(raw)
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        text = raw_text(raw)
        body = {"error": {"message": f"{label} returned HTTP {status}" + (f": {text}" if text else "")}}
    return response.error_from_body(status, body, retry_after_s=retry_after_seconds(headers))


class GeminiAdapter(AdapterBase):
    kind = "gemini"
    operations = operations_for("gemini")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock  # only for the `created` stamp of translated answers

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
        path = model_path(model)
        base = f"{join_base(provider.network.base_url, spec.path_prefix)}/{model_url_path(model)}"
        headers = {"Content-Type": "application/json", "x-goog-api-key": key.value}
        if provider.network.extra_headers:
            headers.update(provider.network.extra_headers)
        if op == EMBEDDINGS:
            return UpstreamRequest(
                "POST", f"{base}:batchEmbedContents", headers, request.build_batch_embed_body(body, path)
            )
        if op == COUNT_TOKENS:
            return UpstreamRequest("POST", f"{base}:countTokens", headers, request.build_count_body(body, path))
        payload = request.build_generate_body(body)
        url = f"{base}:streamGenerateContent?alt=sse" if stream else f"{base}:generateContent"
        return UpstreamRequest("POST", url, headers, payload)

    def parse_response(self, op: str, model: str, raw: bytes) -> ParsedResponse:
        if op == EMBEDDINGS:
            data, usage = response.parse_embeddings(raw, model)
            return ParsedResponse(data, usage)
        if op == COUNT_TOKENS:
            return parse_count(raw)
        answer, answer_usage = response.parse_generate(raw, model, int(self.clock()))
        return ParsedResponse(answer, answer_usage)

    def stream_translator(self, op: str, model: str) -> response.GenerateStream:
        return response.GenerateStream(model, int(self.clock()))

    def parse_error(self, status: int, headers: Mapping[str, str], raw: bytes) -> ProviderError:
        return google_error(status, headers, raw, "Gemini")


__all__ = ["GeminiAdapter", "google_error", "model_path", "model_url_path", "parse_count"]

"""Anthropic's Messages API: `POST {base}/v1/messages` with `x-api-key` and `anthropic-version`.

Translation lives in anthropic_wire (Vertex AI reuses it for Claude models); this module only knows
the endpoint, the headers and the error envelope. Token counting goes to `/v1/messages/count_tokens`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from runtime.config.model import KeyConfig, ProviderConfig
from runtime.errors import ProviderError
from runtime.providers import anthropic_wire as wire
from runtime.providers.base import AdapterBase, ParsedResponse, UpstreamRequest
from runtime.providers.capabilities import COUNT_TOKENS, operations_for
from runtime.providers.common import error_body, loads_object, raw_text
from runtime.providers.openai import retry_after_seconds
from runtime.providers.registry import ProviderSpec, join_base

API_VERSION = "2023-06-01"


class AnthropicAdapter(AdapterBase):
    kind = "anthropic"
    operations = operations_for("anthropic")

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
        base = f"{join_base(provider.network.base_url, spec.path_prefix)}/messages"
        headers = {
            "Content-Type": "application/json",
            "x-api-key": key.value,
            "anthropic-version": str(key.extra.get("anthropic_version") or API_VERSION),
        }
        beta = body.get("anthropic_beta") or key.extra.get("anthropic_beta")
        if isinstance(beta, (list, tuple)):
            beta = ",".join(str(b) for b in beta)
        if beta:
            headers["anthropic-beta"] = str(beta)
        if provider.network.extra_headers:
            headers.update(provider.network.extra_headers)
        if op == COUNT_TOKENS:
            payload = wire.build_messages_body(body, model, False, counting=True)
            return UpstreamRequest("POST", base + "/count_tokens", headers, payload)
        payload = wire.build_messages_body(body, model, stream, self.default_max_tokens(provider))
        return UpstreamRequest("POST", base, headers, payload)

    @staticmethod
    def default_max_tokens(provider: ProviderConfig) -> int:
        value = provider.extra.get("default_max_tokens")
        return value if isinstance(value, int) and value > 0 else wire.DEFAULT_MAX_TOKENS

    def parse_response(self, op: str, model: str, raw: bytes) -> ParsedResponse:
        if op == COUNT_TOKENS:
            data = loads_object(raw, "Anthropic count_tokens response")
            return ParsedResponse({"object": "token_count", "input_tokens": int(data.get("input_tokens") or 0)}, None)
        answer, usage = wire.parse_message(raw, model, int(self.clock()))
        return ParsedResponse(answer, usage)

    def stream_translator(self, op: str, model: str) -> wire.MessagesStream:
        return wire.MessagesStream(model, int(self.clock()))

    def parse_error(self, status: int, headers: Mapping[str, str], raw: bytes) -> ProviderError:
        body = error_body(raw)
        if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
            text = raw_text(raw)
            body = {
                "type": "error",
                "error": {"type": None, "message": f"Anthropic returned HTTP {status}" + (f": {text}" if text else "")},
            }
        return wire.error_from_body(status, body, headers, retry_after_s=retry_after_seconds(headers))

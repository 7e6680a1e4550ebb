"""AWS Bedrock Runtime: Converse / ConverseStream for chat, InvokeModel for Titan and Cohere embeddings.

    POST {base}/model/{modelId}/converse          JSON
    POST {base}/model/{modelId}/converse-stream   AWS event-stream frames
    POST {base}/model/{modelId}/invoke            model-specific JSON (embeddings)

Keys carry `bedrock_key_config` (Go Bifrost's fields): access_key, secret_key, session_token, region,
deployments (model -> model id or inference profile), arn (prefix for application inference profiles).
Requests are SigV4-signed over the exact bytes in `sign`; a key with only `value` is sent as a Bedrock
API key (`Authorization: Bearer`). The base URL's `{region}` comes from the key; a configured
network_config.base_url replaces the whole origin.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import aiohttp

from runtime.config.model import KeyConfig, ProviderConfig
from runtime.errors import GatewayError, ProviderError
from runtime.providers import bedrock_wire as wire
from runtime.providers import sigv4
from runtime.providers.base import EMBEDDINGS, AdapterBase, ParsedResponse, UpstreamRequest
from runtime.providers.bedrock_stream import ConverseStream
from runtime.providers.capabilities import operations_for
from runtime.providers.common import error_body, path_segment, raw_text, stable_id
from runtime.providers.openai import retry_after_seconds
from runtime.providers.registry import ProviderSpec

DEFAULT_REGION = "us-east-1"
SERVICE = "bedrock"


def key_config(key: KeyConfig) -> Mapping[str, Any]:
    config = key.extra.get("bedrock_key_config")
    return config if isinstance(config, Mapping) else {}


def model_id(model: str, config: Mapping[str, Any]) -> str:
    deployments = config.get("deployments")
    target = str(deployments.get(model, model)) if isinstance(deployments, Mapping) else model
    arn = config.get("arn")
    return f"{arn}/{target}" if arn and not target.startswith("arn:") else target


class BedrockAdapter(AdapterBase):
    kind = "bedrock"
    operations = operations_for("bedrock")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock  # `created` stamps, and the SigV4 timestamp in `sign`

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
        region = str(config.get("region") or DEFAULT_REGION)
        base = (provider.network.base_url or "").replace("{region}", region)
        # Encoded like botocore does (":" of versioned ids too); sigv4 signs the encoded path.
        path = f"{base}{spec.path_prefix}/model/{path_segment(model_id(model, config), '')}"
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if op == EMBEDDINGS:
            url, payload = f"{path}/invoke", wire.build_embed_body(body, model)
        else:
            payload = wire.build_converse_body(body)
            url = f"{path}/converse-stream" if stream else f"{path}/converse"
            if stream:
                headers["Accept"] = "application/vnd.amazon.eventstream"
        if not config.get("access_key"):
            if not key.value:
                raise GatewayError(
                    f"bedrock key '{key.name}' has neither bedrock_key_config.access_key/secret_key "
                    "nor a Bedrock API key in 'value'",
                    status=500,
                    type="configuration_error",
                    code="missing_credentials",
                )
            headers["Authorization"] = f"Bearer {key.value}"  # a Bedrock API key
        if provider.network.extra_headers:
            headers.update(provider.network.extra_headers)
        return UpstreamRequest("POST", url, headers, payload)

    async def sign(
        self, request: UpstreamRequest, key: KeyConfig, provider: ProviderConfig, session: aiohttp.ClientSession | None
    ) -> None:
        config = key_config(key)
        access, secret = config.get("access_key"), config.get("secret_key")
        if not access:
            return
        if not secret:
            raise GatewayError(
                f"bedrock key '{key.name}' has an access_key but no secret_key "
                "(providers.bedrock.keys[].bedrock_key_config.secret_key)",
                status=500,
                type="configuration_error",
                code="missing_credentials",
            )
        signed = {"Content-Type": request.headers["Content-Type"]}
        request.headers.update(
            sigv4.sign(
                request.method,
                request.url,
                signed,
                request.body or b"",
                access_key=str(access),
                secret_key=str(secret),
                region=str(config.get("region") or DEFAULT_REGION),
                service=SERVICE,
                now=datetime.fromtimestamp(self.clock(), timezone.utc),
                session_token=str(config["session_token"]) if config.get("session_token") else None,
            )
        )

    def parse_response(self, op: str, model: str, raw: bytes) -> ParsedResponse:
        if op == EMBEDDINGS:
            data, usage = wire.parse_embed(raw, model)
            return ParsedResponse(data, usage)
        answer, answer_usage = wire.parse_converse(
            raw, model, int(self.clock()), stable_id("chatcmpl-", raw.hex()[:64])
        )
        return ParsedResponse(answer, answer_usage)

    def stream_translator(self, op: str, model: str) -> ConverseStream:
        created = int(self.clock())
        return ConverseStream(model, created, stable_id("chatcmpl-", model, created))

    def parse_error(self, status: int, headers: Mapping[str, str], raw: bytes) -> ProviderError:
        body = error_body(raw)
        message = ""
        if isinstance(body, dict):
            message = str(body.get("message") or body.get("Message") or "")
        if not message:
            text = raw_text(raw)
            message = f"Bedrock returned HTTP {status}" + (f": {text}" if text else "")
        kind = headers.get("x-amzn-errortype") or (body.get("__type") if isinstance(body, dict) else None)
        return wire.error_from(kind, status, message, body, retry_after_s=retry_after_seconds(headers))

    def deployments(self, key: KeyConfig) -> Iterable[str]:
        deployments = key_config(key).get("deployments")
        return deployments if isinstance(deployments, Mapping) else ()

"""OpenAI-compatible ingress: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models.

The identity ingress of the shared relay (runtime/http/relay.py): parse the body once, check only the
fields routing and the endpoint need, hand everything else to the provider untouched. Answers pass
through byte for byte when the provider speaks OpenAI's format.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from aiohttp import web

from runtime.catalog import ModelInfo
from runtime.codecs import fields
from runtime.codecs.sse import DONE
from runtime.core.context import RequestContext
from runtime.core.cost import book_for
from runtime.core.gateway import Gateway, encode_json
from runtime.errors import GatewayError, InvalidRequest
from runtime.http.body import check_type, require
from runtime.http.errors import error_payload, error_response
from runtime.http.keys import GATEWAY
from runtime.http.relay import gateway_headers, serve
from runtime.providers.base import CHAT, COMPLETIONS, EMBEDDINGS, ParsedResponse, Usage
from runtime.providers.common import content_parts, message_tool_calls


def _validate(op: str, body: dict[str, Any]) -> None:
    """Check the types of the fields the gateway or a translating adapter reads, so a wrong type is a 400
    naming the field (never an exception inside a provider's request building). Unknown fields and
    content-part types pass through: the provider judges those."""
    if op == CHAT:
        messages = require(body, "messages", list)
        if not messages:
            raise_invalid("'messages' must contain at least one message", "messages")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise_invalid(f"'messages[{i}]' must be an object with a string 'role'", f"messages[{i}]")
            content_parts(m.get("content"), f"messages[{i}].content")
            for j, (_id, _name, arguments) in enumerate(message_tool_calls(m, f"messages[{i}]")):
                if arguments is not None and not isinstance(arguments, (str, dict)):
                    where = f"messages[{i}].tool_calls[{j}].function.arguments"
                    raise fields.invalid(where, "a JSON string", arguments)
            fields.maybe_str(m, "tool_call_id", f"messages[{i}]")
        fields.opt_objects(body, "tools")
        check_type(body, "tool_choice", (str, dict))
        check_type(body, "stop", (str, list))
        if isinstance(body.get("stop"), list):
            fields.strings(body["stop"], "stop")
        check_type(body, "response_format", dict)
    elif op == COMPLETIONS:
        _tokens_or_texts(require(body, "prompt", (str, list)), "prompt")
    elif op == EMBEDDINGS:
        _tokens_or_texts(require(body, "input", (str, list)), "input")
        fields.opt_int(body, "dimensions", minimum=1, maximum=fields.MAX_DIMENSIONS)
        fields.maybe_str(body, "encoding_format")
    fields.check_sampling(body)
    check_type(body, "stream", bool)
    check_type(body, "stream_options", dict)
    check_type(body, "user", str)


def _tokens_or_texts(value: Any, name: str) -> None:
    """A prompt or embeddings input: a string, or a list of strings, of token ids, or of token-id lists."""
    if isinstance(value, str):
        return
    for i, item in enumerate(value):
        if isinstance(item, str) or (isinstance(item, int) and not isinstance(item, bool)):
            continue
        if isinstance(item, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in item):
            continue
        raise fields.invalid(f"{name}[{i}]", "a string, a token id or a list of token ids", item)


def raise_invalid(message: str, param: str) -> None:
    raise InvalidRequest(message, param=param)


class OpenAIEncoder:
    """OpenAI SSE out of OpenAI-shaped chunks: each chunk as one `data:` event, `[DONE]` at the end."""

    __slots__ = ("wants_usage",)

    def __init__(self, wants_usage: bool) -> None:
        self.wants_usage = wants_usage

    def encode(self, chunk: dict[str, Any]) -> bytes:
        # We asked upstream for usage so the log always has it; the client did not.
        if not self.wants_usage and chunk.pop("usage", None) is not None and not chunk.get("choices"):
            return b""
        return b"data: " + encode_json(chunk) + b"\n\n"

    def end(self, usage: Usage | None, rid: str = "") -> bytes:
        return DONE

    def error(self, err: GatewayError, ctx: RequestContext) -> bytes:
        return b"data: " + encode_json(error_payload(err, ctx)) + b"\n\n"


class OpenAIIngress:
    """The identity ingress: the client's body is the internal one. It is validated after routing (a
    missing or unknown model is reported first), and an answer from a provider that speaks OpenAI goes
    back byte for byte."""

    name = "openai"

    def __init__(self, op: str) -> None:
        self.op = op

    def to_internal(self, body: dict[str, Any]) -> dict[str, Any]:
        return body

    def routed(self, body: dict[str, Any], targets: list) -> None:
        _validate(self.op, body)

    def respond(self, result: ParsedResponse, ctx: RequestContext) -> bytes:
        return result.raw if result.raw is not None else encode_json(result.data)

    def encoder(self, ctx: RequestContext) -> OpenAIEncoder:
        return OpenAIEncoder(ctx.client_wants_usage)

    def error_response(self, err: GatewayError, ctx: RequestContext, headers: dict[str, str]) -> web.Response:
        return error_response(err, ctx, headers)


_CHAT = OpenAIIngress(CHAT)
_COMPLETIONS = OpenAIIngress(COMPLETIONS)
_EMBEDDINGS = OpenAIIngress(EMBEDDINGS)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await serve(request, CHAT, _CHAT)


async def completions(request: web.Request) -> web.StreamResponse:
    return await serve(request, COMPLETIONS, _COMPLETIONS)


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await serve(request, EMBEDDINGS, _EMBEDDINGS)


def _usd(value: float) -> str:
    """A per-token price as OpenRouter writes it: a decimal string, never an exponent (2.5e-06 -> 0.0000025)."""
    return f"{Decimal(repr(value)):f}"


def catalog_fields(info: ModelInfo | None) -> dict[str, Any]:
    """What /v1/models adds to a model the catalog knows, in OpenRouter's names: `context_length`,
    `max_completion_tokens` and `pricing` (US dollars per token, or per image, as decimal strings)."""
    if info is None:
        return {}
    out: dict[str, Any] = {}
    if info.context_window:
        out["context_length"] = info.context_window
    if info.max_output:
        out["max_completion_tokens"] = info.max_output
    pricing = {
        name: _usd(value)
        for name, value in (
            ("prompt", info.input),
            ("completion", info.output),
            ("input_cache_read", info.cache_read),
            ("input_cache_write", info.cache_write),
            ("image", info.other_prices.get("input_per_image")),
        )
        if isinstance(value, (int, float))
    }
    if pricing:
        out["pricing"] = pricing
    return out


async def list_models(request: web.Request) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    ctx = RequestContext(gw.new_id(), "models")
    book = book_for(gw.config.providers)  # the catalog with the providers' pricing_overrides applied
    data = []
    for name, handle_ in sorted(gw.router.handles.items()):
        owner = "bifrost-mock" if handle_.adapter.local else name
        for model in handle_.listed_models:
            entry = {"id": f"{name}/{model}", "object": "model", "created": 0, "owned_by": owner}
            if not handle_.adapter.local:
                entry.update(catalog_fields(book.info(name, model)))
            data.append(entry)
    # Model groups (config.json `model_groups`): names clients may use as they are, without a provider.
    for group in sorted(gw.config.model_groups):
        data.append({"id": group, "object": "model", "created": 0, "owned_by": "bifrost-group"})
    return web.Response(
        body=encode_json({"object": "list", "data": data}),
        content_type="application/json",
        headers=gateway_headers(ctx),
    )


def add_routes(app: web.Application) -> None:
    for prefix in ("/v1", "/openai/v1"):
        app.router.add_post(f"{prefix}/chat/completions", chat_completions)
        app.router.add_post(f"{prefix}/completions", completions)
        app.router.add_post(f"{prefix}/embeddings", embeddings)
        app.router.add_get(f"{prefix}/models", list_models)

"""A fake OpenAI API: /v1/chat/completions (JSON and SSE), /v1/completions, /v1/embeddings,
/v1/moderations, /v1/models, answering in the documented wire format and checking `Authorization: Bearer <key>`.

The assistant's answer is deterministic: "<name>: <last user message>" unless a Reply says
otherwise, so a test can tell which fake (which provider) answered.

Moderation is scripted by the input's words (MODERATION_WORDS): "kill" is flagged violence, "hateful"
hate, "malware" illicit, "harass" harassment; "borderline" scores violence 0.4 without flagging it;
anything else is clean.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp import web

from . import wire
from .base import NOT_JSON, FakeProvider, Handler, json_response
from .recorder import RecordedRequest
from .reply import Reply
from .sse import send_sse

# word in the input -> (category, score, flagged)
MODERATION_WORDS = {
    "kill": ("violence", 0.91, True),
    "hateful": ("hate", 0.88, True),
    "malware": ("illicit", 0.83, True),
    "harass": ("harassment", 0.77, True),
    "borderline": ("violence", 0.4, False),
}

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "gpt-3.5-turbo-instruct")

BAD_JSON_MESSAGE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
    "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
)
NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


class FakeOpenAI(FakeProvider):
    """Accepts any model name in requests; `models` is what GET /v1/models lists."""

    def __init__(
        self,
        keys: Iterable[str] = ("sk-fake-1",),
        *,
        name: str = "fake-openai",
        models: Sequence[str] = DEFAULT_MODELS,
        prefixes: Sequence[str] = ("/v1",),
        embedding_dimensions: int = 8,
    ) -> None:
        super().__init__()
        self.keys = set(keys)
        self.name = name
        self.models = list(models)
        self.prefixes = tuple(prefixes)  # e.g. ("/v1", "/api/v1") for OpenRouter-style paths
        self.embedding_dimensions = embedding_dimensions
        self._ids = itertools.count(1)

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        routes: list[tuple[str, str, Handler]] = []
        for p in self.prefixes:
            routes += [
                ("POST", f"{p}/chat/completions", self.chat),
                ("POST", f"{p}/completions", self.completions),
                ("POST", f"{p}/embeddings", self.embeddings),
                ("POST", f"{p}/moderations", self.moderations),
                ("GET", f"{p}/models", self.list_models),
            ]
        return routes

    # ---- auth and headers ----

    def auth_error(self, request: web.Request) -> web.Response | None:
        value = request.headers.get("Authorization", "")
        if not value.lower().startswith("bearer ") or not value[7:].strip():
            return json_response(wire.error_body(NO_KEY_MESSAGE, "invalid_request_error"), 401)
        key = value[7:].strip()
        if key not in self.keys:
            shown = key[:3] + "*" * 4 + key[-4:] if len(key) > 8 else "****"
            message = (
                f"Incorrect API key provided: {shown}. "
                "You can find your API key at https://platform.openai.com/account/api-keys."
            )
            return json_response(wire.error_body(message, "invalid_request_error", code="invalid_api_key"), 401)
        return None

    def response_headers(self) -> dict[str, str]:
        return {
            "x-request-id": f"req_fake{next(self._ids):08d}",
            "openai-processing-ms": "1",
            "openai-version": "2020-10-01",
        }

    def next_id(self, prefix: str) -> str:
        return f"{prefix}-fake{next(self._ids):08d}"

    # ---- request validation (OpenAI's own 400s) ----

    def invalid(self, rec: RecordedRequest, required: tuple[str, ...]) -> web.Response | None:
        body = rec.body
        if body is NOT_JSON or not isinstance(body, dict):
            return json_response(wire.error_body(BAD_JSON_MESSAGE, "invalid_request_error"), 400)
        if not isinstance(body.get("model"), str) or not body["model"]:
            return json_response(wire.error_body("you must provide a model parameter", "invalid_request_error"), 400)
        for name in required:
            if name not in body:
                return json_response(
                    wire.error_body(
                        f"Missing required parameter: '{name}'.",
                        "invalid_request_error",
                        param=name,
                        code="missing_required_parameter",
                    ),
                    400,
                )
        return None

    # ---- endpoints ----

    def reply_content(self, rec: RecordedRequest, reply: Reply) -> str:
        if reply.content is not None:
            return reply.content
        return f"{self.name}: {wire.last_user_text(rec.body.get('messages'))}"

    def chat_extra(self, chunk_or_body: dict[str, Any]) -> dict[str, Any]:
        """Hook for providers that add fields (Azure's content filter results)."""
        return chunk_or_body

    def chat_prelude(self) -> list[dict[str, Any]]:
        """Hook: events a provider sends before the first chunk (Azure's prompt filter results)."""
        return []

    async def chat(self, request: web.Request, rec: RecordedRequest, reply: Reply) -> web.StreamResponse:
        error = self.invalid(rec, ("messages",))
        if error is not None:
            return error
        body = rec.body
        tool_calls = reply.tool_calls
        content = None if tool_calls else self.reply_content(rec, reply)
        prompt_tokens = wire.count_tokens(wire.text_of_messages(body["messages"]))
        if tool_calls:
            completion_tokens = sum(wire.count_tokens(tc["arguments"]) for tc in tool_calls) + 1
        else:
            completion_tokens = len(wire.split_text(content or "")) or 1
        usage = dict(reply.usage) if reply.usage else wire.usage(prompt_tokens, completion_tokens)
        common: dict[str, Any] = {
            "id_": self.next_id("chatcmpl"),
            "created": int(time.time()),
            "model": self.answer_model(body["model"]),
            "content": content,
            "tool_calls": tool_calls,
            "usage_": usage,
        }
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = [
                *self.chat_prelude(),
                *(self.chat_extra(c) for c in wire.chat_chunks(include_usage=include_usage, **common)),
            ]
            return await send_sse(request, events, reply, self.recorder, self.response_headers())
        answer = self.chat_extra(wire.chat_completion(**common))
        return json_response(answer, headers={**self.response_headers(), **reply.headers})

    async def completions(self, request: web.Request, rec: RecordedRequest, reply: Reply) -> web.StreamResponse:
        error = self.invalid(rec, ("prompt",))
        if error is not None:
            return error
        body = rec.body
        prompt = body["prompt"]
        prompt_text = prompt if isinstance(prompt, str) else " ".join(str(p) for p in prompt)
        text = reply.content if reply.content is not None else f"{self.name}: {prompt_text}"
        usage = (
            dict(reply.usage)
            if reply.usage
            else wire.usage(wire.count_tokens(prompt_text), len(wire.split_text(text)) or 1)
        )
        common: dict[str, Any] = {
            "id_": self.next_id("cmpl"),
            "created": int(time.time()),
            "model": self.answer_model(body["model"]),
            "text": text,
            "usage_": usage,
        }
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = list(wire.text_completion_chunks(include_usage=include_usage, **common))
            return await send_sse(request, events, reply, self.recorder, self.response_headers())
        return json_response(wire.text_completion(**common), headers={**self.response_headers(), **reply.headers})

    async def embeddings(self, request: web.Request, rec: RecordedRequest, reply: Reply) -> web.StreamResponse:
        error = self.invalid(rec, ("input",))
        if error is not None:
            return error
        body = rec.body
        raw_input = body["input"]
        inputs = [raw_input] if isinstance(raw_input, str) else [str(x) for x in raw_input]
        answer = wire.embeddings(
            model=self.answer_model(body["model"]),
            inputs=inputs,
            dimensions=int(body.get("dimensions") or self.embedding_dimensions),
            encoding_format=body.get("encoding_format") or "float",
            prompt_tokens=sum(wire.count_tokens(t) for t in inputs),
        )
        return json_response(answer, headers={**self.response_headers(), **reply.headers})

    async def moderations(self, request: web.Request, rec: RecordedRequest, reply: Reply) -> web.StreamResponse:
        body = rec.body
        if body is NOT_JSON or not isinstance(body, dict):
            return json_response(wire.error_body(BAD_JSON_MESSAGE, "invalid_request_error"), 400)
        if "input" not in body:
            return json_response(
                wire.error_body(
                    "Missing required parameter: 'input'.",
                    "invalid_request_error",
                    param="input",
                    code="missing_required_parameter",
                ),
                400,
            )
        raw_input = body["input"]
        if isinstance(raw_input, str):
            groups: list[tuple[str, bool]] = [(raw_input, False)]
        elif raw_input and all(isinstance(x, str) for x in raw_input):
            groups = [(x, False) for x in raw_input]
        else:  # content parts: one result for all of them
            parts = [p for p in raw_input if isinstance(p, dict)]
            text = " ".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")
            groups = [(text, any(p.get("type") == "image_url" for p in parts))]
        results = [self.moderate(text, image) for text, image in groups]
        model = body.get("model") or "omni-moderation-latest"
        answer = wire.moderations(id_=self.next_id("modr"), model=self.answer_model(model), results=results)
        return json_response(answer, headers={**self.response_headers(), **reply.headers})

    @staticmethod
    def moderate(text: str, with_image: bool) -> dict[str, Any]:
        lowered = text.lower()
        scores: dict[str, float] = {}
        flagged: list[str] = []
        for word, (category, score, flags) in MODERATION_WORDS.items():
            if word in lowered:
                scores[category] = max(score, scores.get(category, 0.0))
                if flags and category not in flagged:
                    flagged.append(category)
        return wire.moderation_result(scores, flagged, with_image)

    async def list_models(self, request: web.Request, rec: RecordedRequest, reply: Reply) -> web.StreamResponse:
        return json_response(wire.models_list(self.models), headers=self.response_headers())

    def answer_model(self, requested: str) -> str:
        """The model name the answer reports (OpenAI echoes the requested name)."""
        return requested

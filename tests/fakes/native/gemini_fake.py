"""A fake Gemini API (Generative Language, v1beta): generateContent, streamGenerateContent?alt=sse,
batchEmbedContents, embedContent, countTokens under /v1beta/models/{model}:{method}.

It checks what Gemini checks: the `x-goog-api-key` (a wrong key is Gemini's 400 INVALID_ARGUMENT with
reason API_KEY_INVALID), part shapes (exactly one of text/inlineData/fileData/functionCall/
functionResponse), roles, function responses matching the previous turn's calls in number and name,
schemas in Gemini's OpenAPI subset (upper-case types, no additionalProperties), and known
generationConfig fields. Errors use Google's envelope {"error": {code, message, status, details}}.

`FakeVertex` reuses the same answers under Vertex paths (see vertex_fake.py).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from ..base import NOT_JSON, FakeProvider, Handler, json_response
from ..recorder import RecordedRequest
from ..reply import Reply
from .common import NativeReply, answer_text, apply_stops, send_stream, tool_calls_of, words

PART_KINDS = ("text", "inlineData", "fileData", "functionCall", "functionResponse")
SCHEMA_TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
SCHEMA_KEYS = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
}
GEN_KEYS = {
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "candidateCount",
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "thinkingConfig",
}
STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def google_error_body(code: int, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "status": STATUS.get(code, "UNKNOWN"),
            **({"details": details} if details else {}),
        }
    }


def error(code: int, message: str, details: list[Any] | None = None) -> web.Response:
    return json_response(google_error_body(code, message, details), code)


def error_reply(code: int, message: str, details: list[Any] | None = None, **kw: Any) -> NativeReply:
    return NativeReply(status=code, json=google_error_body(code, message, details), **kw)


def schema_problem(schema: Any, where: str) -> str | None:
    if not isinstance(schema, dict):
        return f"{where}: schema must be an object"
    for key in schema:
        if key not in SCHEMA_KEYS:
            return f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
    if "type" in schema and (not isinstance(schema["type"], str) or schema["type"] not in SCHEMA_TYPES):
        return f"{where}.type: invalid value {schema['type']!r}"
    if not isinstance(schema.get("properties") or {}, dict):  # Gemini's 400 for a malformed schema
        return f"{where}.properties: must be an object"
    for name, sub in (schema.get("properties") or {}).items():
        problem = schema_problem(sub, f"{where}.properties[{name}]")
        if problem:
            return problem
    if "items" in schema:
        return schema_problem(schema["items"], f"{where}.items")
    return None


def validate(body: Any) -> str | None:
    if body is NOT_JSON or not isinstance(body, dict):
        return "Invalid JSON payload received."
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    calls: list[str] = []
    for i, content in enumerate(contents):
        role = content.get("role", "user")
        if role not in ("user", "model"):
            return f"contents[{i}].role: Please use a valid role: user, model."
        if i and contents[i - 1].get("role", "user") == role:
            return f"contents[{i}]: roles must alternate between user and model"
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"contents[{i}].parts: must not be empty"
        responses = []
        for j, part in enumerate(parts):
            kinds = [k for k in PART_KINDS if k in part]
            if len(kinds) != 1:
                return f"contents[{i}].parts[{j}]: exactly one data field is required, got {kinds}"
            kind = kinds[0]
            if kind == "functionCall" and role != "model":
                return f"contents[{i}].parts[{j}]: functionCall only in model turns"
            if kind == "functionResponse":
                if role != "user" or not isinstance(part["functionResponse"].get("response"), dict):
                    return f"contents[{i}].parts[{j}]: functionResponse needs a user turn and a response object"
                responses.append(part["functionResponse"].get("name"))
            if kind == "inlineData" and not (part["inlineData"].get("mimeType") and part["inlineData"].get("data")):
                return f"contents[{i}].parts[{j}].inlineData: mimeType and data are required"
            if kind == "fileData" and not part["fileData"].get("fileUri"):
                return f"contents[{i}].parts[{j}].fileData: fileUri is required"
        if calls and sorted(responses) != sorted(calls):
            return (
                "Please ensure that the number of function response parts is equal to the number of function "
                "call parts of the function call turn."
            )
        calls = [p["functionCall"]["name"] for p in parts if "functionCall" in p]
    for t, tool in enumerate(body.get("tools") or ()):
        for d, decl in enumerate(tool.get("functionDeclarations") or ()):
            if not decl.get("name"):
                return f"tools[{t}].function_declarations[{d}].name: required"
            if "parameters" in decl:
                problem = schema_problem(decl["parameters"], f"tools[{t}].function_declarations[{d}].parameters")
                if problem:
                    return problem
    config = body.get("generationConfig") or {}
    for key in config:
        if key not in GEN_KEYS:
            return f"Invalid JSON payload received. Unknown name \"{key}\" at 'generation_config'"
    if "responseSchema" in config:
        problem = schema_problem(config["responseSchema"], "generation_config.response_schema")
        if problem:
            return problem
    mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
    if mode is not None and mode not in ("AUTO", "ANY", "NONE"):
        return "tool_config.function_calling_config.mode: invalid"
    return None


def all_text(body: dict[str, Any]) -> str:
    texts = [p.get("text", "") for p in (body.get("systemInstruction") or {}).get("parts", ())]
    for content in body["contents"]:
        for part in content["parts"]:
            if "text" in part:
                texts.append(part["text"])
            elif "functionResponse" in part:
                texts.append(json.dumps(part["functionResponse"]["response"]))
    return " ".join(texts)


def last_user_text(body: dict[str, Any]) -> str:
    for content in reversed(body["contents"]):
        if content.get("role", "user") == "user":
            return " ".join(p["text"] for p in content["parts"] if "text" in p)
    return ""


def vector(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [(digest[i % len(digest)] - 128) / 128.0 for i in range(dimensions)]


class FakeGemini(FakeProvider):
    prefix = "/v1beta/models/"

    def __init__(self, keys: Iterable[str] = ("gemini-fake-key",), *, name: str = "fake-gemini") -> None:
        super().__init__()
        self.keys = set(keys)
        self.name = name
        self._ids = itertools.count(1)

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        return [("POST", self.prefix + "{tail:.+}", self.dispatch)]

    def auth_error(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if key not in self.keys:
            return error(
                400,
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                    }
                ],
            )
        return None

    async def dispatch(self, request: web.Request, rec: RecordedRequest, reply: Reply) -> web.StreamResponse:
        model, _, method = request.match_info["tail"].rpartition(":")
        if method == "generateContent":
            return await self.generate(request, rec, reply, model, stream=False)
        if method == "streamGenerateContent":
            if request.query.get("alt") != "sse":
                return error(400, "this fake only speaks alt=sse streams")
            return await self.generate(request, rec, reply, model, stream=True)
        if method in ("batchEmbedContents", "embedContent"):
            return self.embed(rec, model, method == "batchEmbedContents")
        if method == "countTokens":
            body = rec.body.get("generateContentRequest") or rec.body
            problem = validate(body)
            return error(400, problem) if problem else json_response({"totalTokens": words(all_text(body))})
        return error(404, f"Method {method} not found")

    def embed(self, rec: RecordedRequest, model: str, batch: bool) -> web.Response:
        requests = rec.body.get("requests") if batch else [rec.body]
        out = []
        for i, request in enumerate(requests or ()):
            if batch and request.get("model") != f"models/{model}":
                return error(400, f"requests[{i}].model: must be models/{model}")
            text = " ".join(p.get("text", "") for p in request["content"]["parts"])
            out.append({"values": vector(text, int(request.get("outputDimensionality") or 8))})
        return json_response({"embeddings": out} if batch else {"embedding": out[0]})

    def answer(self, body: dict[str, Any], reply: Reply, model: str) -> dict[str, Any]:
        config = body.get("generationConfig") or {}
        calling = ((body.get("toolConfig") or {}).get("functionCallingConfig")) or {}
        parts: list[dict[str, Any]] = []
        finish = "STOP"
        calls = tool_calls_of(reply)
        declared = [d["name"] for t in body.get("tools") or () for d in t.get("functionDeclarations") or ()]
        if calls:
            parts = [{"functionCall": {"name": c["name"], "args": c["input"]}} for c in calls]
        elif calling.get("mode") == "ANY" and declared:
            name = (calling.get("allowedFunctionNames") or declared)[0]
            parts = [{"functionCall": {"name": name, "args": {"echo": last_user_text(body)}}}]
        else:
            text = answer_text(self.name, last_user_text(body), reply)
            if config.get("responseMimeType") == "application/json" and reply.content is None:
                text = json.dumps({"echo": last_user_text(body)})
            text, _stop, cut = apply_stops(text, config.get("stopSequences"), config.get("maxOutputTokens"))
            finish = "MAX_TOKENS" if cut else "STOP"
            parts = [{"text": text}]
        if isinstance(reply, NativeReply) and reply.finish:
            finish = reply.finish
        out_tokens = sum(words(p.get("text", "")) or words(json.dumps(p.get("functionCall"))) for p in parts)
        prompt = words(all_text(body))
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": out_tokens, "totalTokenCount": prompt + out_tokens}
        usage.update(reply.usage or {})
        candidates = [
            {"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": i, "safetyRatings": []}
            for i in range(int(config.get("candidateCount") or 1))
        ]
        return {
            "candidates": candidates,
            "usageMetadata": usage,
            "modelVersion": model,
            "responseId": f"resp-fake-{next(self._ids):05d}",
        }

    async def generate(
        self,
        request: web.Request,
        rec: RecordedRequest,
        reply: Reply,
        model: str,
        stream: bool,
        body: dict[str, Any] | None = None,
    ) -> web.StreamResponse:
        body = body if body is not None else rec.body
        problem = validate(body)
        if problem:
            return error(400, problem)
        answer = self.answer(body, reply, model)
        if not stream:
            return json_response(answer, headers=dict(reply.headers))
        frames = [f"data: {json.dumps(chunk)}\r\n\r\n".encode() for chunk in self.chunks(answer)]
        err = reply.stream_error if isinstance(reply, NativeReply) else None
        error_frame = f"data: {json.dumps(err)}\r\n\r\n".encode() if err else None
        return await send_stream(request, frames, reply, self.recorder, {}, error_frame=error_frame)

    @staticmethod
    def chunks(answer: dict[str, Any]) -> Iterable[dict[str, Any]]:
        """Text word by word (usage so far on each chunk), calls whole, finishReason and usage last."""
        usage = answer["usageMetadata"]
        common = {"modelVersion": answer["modelVersion"], "responseId": answer["responseId"]}
        for candidate in answer["candidates"]:
            parts = candidate["content"]["parts"]
            pieces: list[dict[str, Any]] = []
            for part in parts:
                if "text" in part:
                    words_ = part["text"].split(" ")
                    pieces.extend({"text": w if n == len(words_) - 1 else w + " "} for n, w in enumerate(words_))
                else:
                    pieces.append(part)
            for n, piece in enumerate(pieces):
                last = n == len(pieces) - 1
                chunk_candidate: dict[str, Any] = {
                    "content": {"parts": [piece], "role": "model"},
                    "index": candidate["index"],
                }
                meta = {"promptTokenCount": usage["promptTokenCount"]}
                if last:
                    chunk_candidate["finishReason"] = candidate["finishReason"]
                    meta = usage
                yield {"candidates": [chunk_candidate], "usageMetadata": meta, **common}

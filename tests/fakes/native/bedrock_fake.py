"""A fake Bedrock Runtime: /model/{modelId}/converse, /converse-stream (AWS event-stream frames) and
/invoke (Titan and Cohere embeddings).

Every request's SigV4 signature is verified for real with botocore's signer (an implementation
independent of the gateway's): the fake rebuilds the request from the headers named in SignedHeaders
and compares signatures; a wrong key is AWS's 403 UnrecognizedClientException, a bad signature 403
InvalidSignatureException. Bodies are checked the way Converse checks them (alternating roles, one data
member per content block, toolUse answered by toolResult, toolConfig present when tools are in play).
Stream frames are written by `frame()` below, not by the gateway's codec.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import struct
import zlib
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ..base import NOT_JSON, FakeProvider, Handler, json_response
from ..recorder import RecordedRequest
from ..reply import Reply
from .common import NativeReply, answer_text, apply_stops, fragments, send_stream, tool_calls_of, words
from .gemini_fake import vector

BLOCK_KINDS = ("text", "image", "document", "toolUse", "toolResult", "reasoningContent", "cachePoint")
INFERENCE_KEYS = {"maxTokens", "temperature", "topP", "stopSequences"}
CORAL = ":http://internal.amazon.com/coral/com.amazon.bedrock/"


def aws_error(status: int, kind: str, message: str) -> web.Response:
    return json_response({"message": message}, status, {"x-amzn-ErrorType": kind + CORAL})


def error_reply(status: int, kind: str, message: str, **kw: Any) -> NativeReply:
    return NativeReply(status=status, json={"message": message}, headers={"x-amzn-ErrorType": kind + CORAL}, **kw)


def frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message with string headers."""
    head = b""
    for name, value in headers.items():
        raw = value.encode()
        head += struct.pack("B", len(name)) + name.encode() + b"\x07" + struct.pack(">H", len(raw)) + raw
    total = 16 + len(head) + len(payload)
    prelude = struct.pack(">II", total, len(head))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + head + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(kind: str, body: dict[str, Any]) -> bytes:
    return frame(
        {":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
        json.dumps({**body, "p": "abcdefgh"}).encode(),
    )


def exception_frame(kind: str, message: str) -> bytes:
    return frame(
        {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"},
        json.dumps({"message": message}).encode(),
    )


def _block_problem(block: Any, where: str, role: str) -> str | None:
    kinds = [k for k in BLOCK_KINDS if isinstance(block, dict) and k in block]
    if len(kinds) != 1:
        return f"{where}: a content block must have exactly one member, got {kinds}"
    kind = kinds[0]
    if kind == "text" and not block["text"]:
        return f"{where}.text: must not be empty"
    if kind == "image":
        image = block["image"]
        if image.get("format") not in ("png", "jpeg", "gif", "webp"):
            return f"{where}.image.format: invalid"
        try:
            base64.b64decode(image["source"]["bytes"], validate=True)
        except (KeyError, binascii.Error):
            return f"{where}.image.source.bytes: must be base64 bytes"
    if kind == "toolUse" and (role != "assistant" or not isinstance(block["toolUse"].get("input"), dict)):
        return f"{where}.toolUse: only in assistant turns, with an input object"
    if kind == "toolResult":
        result = block["toolResult"]
        if role != "user" or not isinstance(result.get("content"), list) or not result["content"]:
            return f"{where}.toolResult: only in user turns, with a content list"
        if result.get("status") not in (None, "success", "error"):
            return f"{where}.toolResult.status: invalid"
    return None


def validate(body: Any) -> str | None:
    if body is NOT_JSON or not isinstance(body, dict):
        return "Malformed input request, please reformat your input and try again."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "The model returned the following errors: messages: at least one message is required"
    uses_tools = False
    pending: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if role != ("user" if i % 2 == 0 else "assistant"):
            return "A conversation must alternate between user and assistant roles, starting with user."
        content = message.get("content")
        if not isinstance(content, list) or not content:
            return f"messages.{i}.content: must be a non-empty list"
        for j, block in enumerate(content):
            problem = _block_problem(block, f"messages.{i}.content.{j}", role)
            if problem:
                return problem
        results = {b["toolResult"]["toolUseId"] for b in content if "toolResult" in b}
        if pending and results != pending:
            return (
                f"Expected toolResult blocks at messages.{i}.content for the following Ids: "
                f"{', '.join(sorted(pending - results))}"
            )
        pending = {b["toolUse"]["toolUseId"] for b in content if "toolUse" in b}
        uses_tools = uses_tools or bool(pending or results)
    tools = (body.get("toolConfig") or {}).get("tools")
    if uses_tools and not tools:
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    names = set()
    for i, tool in enumerate(tools or ()):
        spec = tool.get("toolSpec") or {}
        if not spec.get("name") or not isinstance((spec.get("inputSchema") or {}).get("json"), dict):
            return f"toolConfig.tools.{i}.toolSpec: name and inputSchema.json are required"
        names.add(spec["name"])
    choice = (body.get("toolConfig") or {}).get("toolChoice")
    if choice is not None:
        if len(choice) != 1 or next(iter(choice)) not in ("auto", "any", "tool"):
            return "toolConfig.toolChoice: exactly one of auto, any, tool"
        if "tool" in choice and choice["tool"].get("name") not in names:
            return "toolConfig.toolChoice.tool.name: no such tool"
    for key in body.get("inferenceConfig") or {}:
        if key not in INFERENCE_KEYS:
            return f"inferenceConfig: unknown field {key}"
    for i, block in enumerate(body.get("system") or ()):
        if set(block) - {"text", "cachePoint", "guardContent"}:
            return f"system.{i}: invalid block"
    return None


def all_text(body: dict[str, Any]) -> str:
    texts = [b.get("text", "") for b in body.get("system") or ()]
    for message in body["messages"]:
        for block in message["content"]:
            if "text" in block:
                texts.append(block["text"])
            elif "toolResult" in block:
                texts.extend(c.get("text", json.dumps(c.get("json"))) for c in block["toolResult"]["content"])
    return " ".join(texts)


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body["messages"]):
        if message["role"] == "user":
            return " ".join(b["text"] for b in message["content"] if "text" in b)
    return ""


class FakeBedrock(FakeProvider):
    def __init__(
        self,
        credentials: Mapping[str, str] | None = None,
        *,
        region: str = "us-west-2",
        session_token: str | None = None,
        name: str = "fake-bedrock",
    ) -> None:
        super().__init__()
        self.credentials = dict(credentials or {"AKIAFAKEEXAMPLE": "fake/secret+key"})
        self.region = region
        self.session_token = session_token
        self.name = name
        self.verified = 0  # signatures checked and found right
        self._ids = itertools.count(1)

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        return [("POST", "/model/{tail:.+}", self.dispatch)]

    def signature_error(self, request: web.Request, body: bytes) -> web.Response | None:
        """Check the SigV4 signature over the exact bytes received (hence here, not in auth_error)."""
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        fields = dict(part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 ") :].split(","))
        access, date, region, service, _ = fields["Credential"].split("/")
        if access not in self.credentials:
            return aws_error(
                403, "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        if (region, service) != (self.region, "bedrock") or request.headers.get("X-Amz-Date", "")[:8] != date:
            return aws_error(403, "InvalidSignatureException", f"Credential should be scoped to {self.region}/bedrock")
        if self.session_token and request.headers.get("X-Amz-Security-Token") != self.session_token:
            return aws_error(
                403, "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        signed = fields["SignedHeaders"].split(";")
        if not {"host", "x-amz-date"} <= set(signed):
            return aws_error(403, "InvalidSignatureException", "host and x-amz-date must be signed")
        headers = {name: request.headers[name] for name in signed}
        aws = AWSRequest(
            method=request.method, url=f"http://{request.host}{request.raw_path}", data=body, headers=headers
        )
        aws.context["timestamp"] = request.headers["X-Amz-Date"]
        signer = SigV4Auth(Credentials(access, self.credentials[access], self.session_token), "bedrock", region)
        expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
        if expected != fields["Signature"]:
            return aws_error(
                403,
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided.",
            )
        self.verified += 1
        return None

    async def dispatch(self, request: web.Request, rec: RecordedRequest, reply: Reply) -> web.StreamResponse:
        denied = self.signature_error(request, rec.raw)
        if denied is not None:
            return denied
        raw_model, _, operation = request.raw_path.split("/model/", 1)[1].rpartition("/")
        model = unquote(raw_model)
        if operation == "invoke":
            return self.invoke(rec, model)
        problem = validate(rec.body)
        if problem:
            return aws_error(400, "ValidationException", problem)
        answer = self.answer(rec.body, reply)
        if operation == "converse":
            return json_response(answer, headers={"x-amzn-RequestId": "req-fake", **reply.headers})
        if operation != "converse-stream":
            return aws_error(404, "UnknownOperationException", operation)
        err = reply.stream_error if isinstance(reply, NativeReply) else None
        error_frame = exception_frame(err["type"], err["message"]) if err else None
        return await send_stream(
            request,
            list(self.events(answer)),
            reply,
            self.recorder,
            {"x-amzn-RequestId": "req-fake"},
            "application/vnd.amazon.eventstream",
            error_frame,
        )

    def invoke(self, rec: RecordedRequest, model: str) -> web.Response:
        body = rec.body
        if "cohere.embed" in model:
            if not isinstance(body.get("texts"), list) or body.get("input_type") not in (
                "search_document",
                "search_query",
                "classification",
                "clustering",
            ):
                return aws_error(400, "ValidationException", "texts and a valid input_type are required")
            return json_response(
                {
                    "embeddings": [vector(t, 8) for t in body["texts"]],
                    "id": "emb-fake",
                    "response_type": "embeddings_floats",
                    "texts": body["texts"],
                }
            )
        if not isinstance(body.get("inputText"), str) or set(body) - {"inputText", "dimensions", "normalize"}:
            return aws_error(400, "ValidationException", "Malformed input request: inputText is required")
        return json_response(
            {
                "embedding": vector(body["inputText"], int(body.get("dimensions") or 8)),
                "inputTextTokenCount": words(body["inputText"]),
            }
        )

    def answer(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        config = body.get("inferenceConfig") or {}
        choice = (body.get("toolConfig") or {}).get("toolChoice") or {}
        calls = tool_calls_of(reply)
        if calls:
            content = [{"toolUse": {"toolUseId": c["id"], "name": c["name"], "input": c["input"]}} for c in calls]
            stop = "tool_use"
        elif "tool" in choice:
            raw = reply.content if reply.content is not None else json.dumps({"echo": last_user_text(body)})
            content = [
                {
                    "toolUse": {
                        "toolUseId": f"tooluse_fake{next(self._ids)}",
                        "name": choice["tool"]["name"],
                        "input": json.loads(raw),
                    }
                }
            ]
            stop = "tool_use"
        else:
            text, hit, cut = apply_stops(
                answer_text(self.name, last_user_text(body), reply),
                config.get("stopSequences"),
                config.get("maxTokens"),
            )
            content = [{"text": text}]
            stop = "max_tokens" if cut else "stop_sequence" if hit else "end_turn"
        if isinstance(reply, NativeReply) and reply.finish:
            stop = reply.finish
        out = sum(words(b.get("text", "")) or words(json.dumps(b.get("toolUse"))) for b in content)
        usage = {"inputTokens": words(all_text(body)), "outputTokens": out}
        usage.update(reply.usage or {})
        usage["totalTokens"] = sum(
            usage.get(k, 0) for k in ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens")
        )
        return {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": usage,
            "metrics": {"latencyMs": 12},
        }

    @staticmethod
    def events(answer: dict[str, Any]) -> Iterable[bytes]:
        yield event("messageStart", {"role": "assistant"})
        for index, block in enumerate(answer["output"]["message"]["content"]):
            if "toolUse" in block:
                use = block["toolUse"]
                yield event(
                    "contentBlockStart",
                    {
                        "contentBlockIndex": index,
                        "start": {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}},
                    },
                )
                for piece in fragments(json.dumps(use["input"])):
                    yield event(
                        "contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}
                    )
            else:
                pieces = block["text"].split(" ")
                for n, piece in enumerate(pieces):
                    text = piece if n == len(pieces) - 1 else piece + " "
                    yield event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": text}})
            yield event("contentBlockStop", {"contentBlockIndex": index})
        yield event("messageStop", {"stopReason": answer["stopReason"]})
        yield event("metadata", {"usage": answer["usage"], "metrics": answer["metrics"]})

"""A fake Azure OpenAI resource (dated API versions):

    POST {endpoint}/openai/deployments/{deployment}/chat/completions?api-version=YYYY-MM-DD
    POST {endpoint}/openai/deployments/{deployment}/completions?api-version=...
    POST {endpoint}/openai/deployments/{deployment}/embeddings?api-version=...

Authenticated by the `api-key` header. A missing `api-version` is answered 404 "Resource not
found", an unknown deployment 404 "DeploymentNotFound", a wrong key 401 — as Azure does. Answers
are OpenAI-shaped plus Azure's content-filter annotations; a stream starts with Azure's
prompt-filter chunk (empty choices, empty id and model) when `prompt_filter_chunk` is on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from . import wire
from .base import NOT_JSON, Handler, json_response
from .openai_fake import BAD_JSON_MESSAGE, FakeOpenAI
from .recorder import RecordedRequest
from .reply import Reply

SAFE = {"filtered": False, "severity": "safe"}
CONTENT_FILTER = {"hate": SAFE, "self_harm": SAFE, "sexual": SAFE, "violence": SAFE}
PROMPT_FILTER = [{"prompt_index": 0, "content_filter_results": CONTENT_FILTER}]

ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
    "key for an active subscription and use a correct regional API endpoint for your resource."
)
DEPLOYMENT_NOT_FOUND = (
    "The API deployment for this resource does not exist. If you created the deployment within the "
    "last 5 minutes, please wait a moment and try again."
)


def azure_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class FakeAzure(FakeOpenAI):
    def __init__(
        self,
        keys: Iterable[str] = ("azure-fake-key",),
        *,
        deployments: Mapping[str, str] | None = None,
        api_versions: Iterable[str] | None = None,
        name: str = "fake-azure",
        prompt_filter_chunk: bool = True,
    ) -> None:
        super().__init__(keys, name=name, models=())
        # deployment name -> model name that the answer reports
        self.deployments = dict(deployments or {"my-gpt4o-deploy": "gpt-4o-2024-08-06"})
        self.api_versions = set(api_versions) if api_versions is not None else None  # None = any
        self.prompt_filter_chunk = prompt_filter_chunk

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        base = "/openai/deployments/{deployment}"
        return [
            ("POST", f"{base}/chat/completions", self.chat),
            ("POST", f"{base}/completions", self.completions),
            ("POST", f"{base}/embeddings", self.embeddings),
        ]

    def auth_error(self, request: web.Request) -> web.Response | None:
        version = request.query.get("api-version")
        if not version or (self.api_versions is not None and version not in self.api_versions):
            return json_response(azure_error("404", "Resource not found"), 404)
        if request.headers.get("api-key", "") not in self.keys:
            return json_response(azure_error("401", ACCESS_DENIED), 401)
        if request.match_info.get("deployment") not in self.deployments:
            return json_response(azure_error("DeploymentNotFound", DEPLOYMENT_NOT_FOUND), 404)
        return None

    def response_headers(self) -> dict[str, str]:
        headers = super().response_headers()
        return {"apim-request-id": headers["x-request-id"], "x-ms-region": "Local", **headers}

    def invalid(self, rec: RecordedRequest, required: tuple[str, ...]) -> web.Response | None:
        # Azure takes the model from the deployment; "model" in the body is optional.
        body = rec.body
        if body is NOT_JSON or not isinstance(body, dict):
            return json_response(wire.error_body(BAD_JSON_MESSAGE, "invalid_request_error"), 400)
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

    async def chat(self, request: web.Request, rec: RecordedRequest, reply: Reply) -> web.StreamResponse:
        return await super().chat(request, _with_model(rec, self.deployments[request.match_info["deployment"]]), reply)

    async def completions(self, request: web.Request, rec: RecordedRequest, reply: Reply) -> web.StreamResponse:
        return await super().completions(
            request, _with_model(rec, self.deployments[request.match_info["deployment"]]), reply
        )

    async def embeddings(self, request: web.Request, rec: RecordedRequest, reply: Reply) -> web.StreamResponse:
        return await super().embeddings(
            request, _with_model(rec, self.deployments[request.match_info["deployment"]]), reply
        )

    def chat_extra(self, chunk_or_body: dict[str, Any]) -> dict[str, Any]:
        for choice in chunk_or_body.get("choices", []):
            delta = choice.get("delta")
            choice["content_filter_results"] = {} if delta is not None and "role" in delta else CONTENT_FILTER
        if chunk_or_body.get("object") == "chat.completion":
            chunk_or_body["prompt_filter_results"] = PROMPT_FILTER
        return chunk_or_body

    def chat_prelude(self) -> list[dict[str, Any]]:
        if not self.prompt_filter_chunk:
            return []
        return [
            {
                "choices": [],
                "created": 0,
                "id": "",
                "model": "",
                "object": "",
                "prompt_filter_results": PROMPT_FILTER,
            }
        ]


def _with_model(rec: RecordedRequest, model: str) -> RecordedRequest:
    """The request as the answer builder sees it: the deployment's model stands in for `model`."""
    if not isinstance(rec.body, dict):
        return rec
    body = {**rec.body, "model": model}
    return RecordedRequest(rec.method, rec.path, rec.query, rec.headers, body, rec.raw, rec.at)

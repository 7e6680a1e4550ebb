"""POST /v1/moderations (and /openai/v1/moderations): OpenAI's moderation endpoint, routed like the others.

The identity ingress (runtime/http/openai.py) with one more operation: the body is OpenAI's
`{"input": str | [str] | [content parts], "model"?: str}`, routed by its model (`openai/omni-moderation-latest`,
or a bare name the router resolves) with the gateway's keys, retries, fallbacks, timeouts, virtual keys and
request log (endpoint "moderations"); the provider's answer goes back byte for byte. A missing `model` is
OpenAI's documented default on the provider named "openai", `openai/omni-moderation-latest` (a governing
virtual key or a model group may still route it elsewhere). Moderation never streams.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from runtime.codecs import fields
from runtime.errors import InvalidRequest
from runtime.http.body import check_type, require
from runtime.http.openai import OpenAIIngress
from runtime.http.relay import serve
from runtime.providers.base import MODERATIONS

DEFAULT_MODEL = "openai/omni-moderation-latest"  # OpenAI's default when a request names none
PART_TYPES = ("text", "image_url")


def validate(body: dict[str, Any]) -> None:
    """The field types the gateway and the moderation guardrail read; a wrong one is a 400 naming it."""
    value = require(body, "input", (str, list))
    if isinstance(value, list):
        if not value:
            raise InvalidRequest("'input' must not be empty", param="input")
        if isinstance(value[0], str):  # a list of texts: every item a string
            for i, item in enumerate(value):
                if not isinstance(item, str):
                    raise fields.invalid(f"input[{i}]", "a string (like input[0])", item)
        else:  # a list of content parts
            for i, part in enumerate(value):
                where = f"input[{i}]"
                if not isinstance(part, dict):
                    raise fields.invalid(where, "a content part object (like input[0])", part)
                kind = part.get("type")
                if kind not in PART_TYPES:
                    raise InvalidRequest(f"'{where}.type' must be 'text' or 'image_url'", param=f"{where}.type")
                if kind == "text":
                    fields.req_str(part, "text", where)
                else:
                    image = fields.as_obj(part.get("image_url"), f"{where}.image_url")
                    fields.req_str(image, "url", f"{where}.image_url")
    check_type(body, "model", str)


class ModerationsIngress(OpenAIIngress):
    def __init__(self) -> None:
        super().__init__(MODERATIONS)

    def to_internal(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("stream") is True:  # checked here, before the pipeline would open a stream
            raise InvalidRequest("'stream' is not supported by /v1/moderations", param="stream")
        if "model" not in body:
            body["model"] = DEFAULT_MODEL
        return body

    def routed(self, body: dict[str, Any], targets: list) -> None:
        validate(body)


_MODERATIONS = ModerationsIngress()


async def moderations(request: web.Request) -> web.StreamResponse:
    return await serve(request, MODERATIONS, _MODERATIONS)


def add_routes(app: web.Application) -> None:
    for prefix in ("/v1", "/openai/v1"):
        app.router.add_post(f"{prefix}/moderations", moderations)

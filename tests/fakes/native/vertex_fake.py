"""A fake Vertex AI with its own OAuth token endpoint.

POST /token verifies the service account's JWT for real: RS256 signature checked with the public key of
the key pair the test generated, `iss`, `aud` (this endpoint), `scope`, and a lifetime of at most an
hour; it answers {"access_token", "expires_in", "token_type"} (expires_in settable, to test refreshes).
Model calls need `Authorization: Bearer <an issued token>` (else Google's 401 UNAUTHENTICATED) and are
answered by the Gemini and Anthropic fakes' logic under Vertex's paths:

    /v1/projects/{p}/locations/{r}/publishers/google/models/{m}:generateContent|streamGenerateContent|countTokens|predict
    /v1/projects/{p}/locations/{r}/publishers/anthropic/models/{m}:rawPredict|streamRawPredict
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..base import FakeProvider, Handler, json_response
from ..recorder import RecordedRequest
from ..reply import Reply
from .anthropic_fake import FakeAnthropic
from .gemini_fake import FakeGemini, error, vector, words

SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def make_service_account(
    token_uri: str, email: str = "gateway@fake-project.iam.gserviceaccount.com"
) -> tuple[dict[str, Any], rsa.RSAPublicKey]:
    """A fresh RSA key pair as a service-account key file (never written to disk) and its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "fake-project",
        "private_key_id": "fakekid1",
        "private_key": pem,
        "client_email": email,
        "client_id": "1",
        "token_uri": token_uri,
    }
    return info, key.public_key()


class FakeVertex(FakeProvider):
    def __init__(
        self, *, project: str = "fake-project", region: str = "us-central1", name: str = "fake-vertex"
    ) -> None:
        super().__init__()
        self.project = project
        self.region = region
        self.name = name
        self.public_key: rsa.RSAPublicKey | None = None
        self.client_email = ""
        self.service_account: dict[str, Any] = {}  # the key file the fake trusts (set by `trust`)
        self.expires_in = 3600
        self.tokens: set[str] = set()
        self.token_requests = 0
        self._ids = itertools.count(1)
        self.gemini = FakeGemini(name=name)
        self.anthropic = FakeAnthropic(name=name)
        self.gemini.recorder = self.anthropic.recorder = self.recorder  # their streams count here

    def trust(self, info: dict[str, Any], public_key: rsa.RSAPublicKey) -> None:
        self.client_email = info["client_email"]
        self.public_key = public_key
        self.service_account = info

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        return [
            ("POST", "/token", self.token),
            (
                "POST",
                "/v1/projects/{project}/locations/{region}/publishers/{publisher}/models/{tail:.+}",
                self.model_call,
            ),
        ]

    def _next_reply(self, rec: RecordedRequest) -> Reply:
        # Token fetches never take a scripted reply: those are meant for the model calls.
        return Reply() if rec.path == "/token" else super()._next_reply(rec)

    def auth_error(self, request: web.Request) -> web.Response | None:
        if request.path == "/token":
            return None
        value = request.headers.get("Authorization", "")
        if not value.startswith("Bearer ") or value[7:] not in self.tokens:
            return error(401, "Request had invalid authentication credentials. Expected OAuth 2 access token.")
        return None

    async def token(self, request: web.Request, rec: RecordedRequest, reply: Reply) -> web.StreamResponse:
        self.token_requests += 1
        form = dict(await request.post())
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return json_response({"error": "unsupported_grant_type"}, 400)
        problem = self._check_assertion(str(form.get("assertion", "")))
        if problem:
            return json_response({"error": "invalid_grant", "error_description": problem}, 400)
        token = f"ya29.fake-{next(self._ids)}"
        self.tokens.add(token)
        return json_response({"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"})

    def _check_assertion(self, assertion: str) -> str | None:
        try:
            header_b64, claims_b64, signature_b64 = assertion.split(".")
            header, claims = json.loads(_unb64(header_b64)), json.loads(_unb64(claims_b64))
        except ValueError:
            return "Invalid JWT: malformed"
        if header.get("alg") != "RS256" or self.public_key is None:
            return "Invalid JWT: alg must be RS256"
        try:
            self.public_key.verify(
                _unb64(signature_b64), f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return "Invalid JWT Signature."
        now = time.time()
        if claims.get("iss") != self.client_email or claims.get("aud") != self.token_uri:
            return "Invalid JWT: iss or aud"
        if claims.get("scope") != SCOPE:
            return "Invalid JWT: scope"
        if not (claims["iat"] - 300 <= now <= claims["exp"]) or claims["exp"] - claims["iat"] > 3600:
            return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
        return None

    async def model_call(self, request: web.Request, rec: RecordedRequest, reply: Reply) -> web.StreamResponse:
        info = request.match_info
        if (info["project"], info["region"]) != (self.project, self.region):
            return error(404, f"Project {info['project']} or location {info['region']} not found")
        model, _, method = info["tail"].rpartition(":")
        body = rec.body
        if info["publisher"] == "anthropic":
            if method == "rawPredict" and model == "count-tokens":
                return await self.anthropic.count(request, rec, reply)
            if "model" in body or body.get("anthropic_version") != "vertex-2023-10-16":
                return error(400, "anthropic_version must be vertex-2023-10-16 and model must not be in the body")
            if method not in ("rawPredict", "streamRawPredict") or bool(body.get("stream")) != (
                method == "streamRawPredict"
            ):
                return error(400, f"{method} does not match the body's stream flag")
            return await self.anthropic.messages(request, rec, reply, body={**body, "model": model})
        if method == "predict":
            predictions = [
                {
                    "embeddings": {
                        "values": vector(
                            i["content"], int((body.get("parameters") or {}).get("outputDimensionality") or 8)
                        ),
                        "statistics": {"token_count": words(i["content"]), "truncated": False},
                    }
                }
                for i in body["instances"]
            ]
            return json_response({"predictions": predictions, "metadata": {"billableCharacterCount": 1}})
        if method == "countTokens":
            return json_response(
                {"totalTokens": words(" ".join(p.get("text", "") for c in body["contents"] for p in c["parts"]))}
            )
        if method in ("generateContent", "streamGenerateContent"):
            if method == "streamGenerateContent" and request.query.get("alt") != "sse":
                return error(400, "this fake only speaks alt=sse streams")
            return await self.gemini.generate(request, rec, reply, model, method == "streamGenerateContent")
        return error(404, f"Method {method} not found")

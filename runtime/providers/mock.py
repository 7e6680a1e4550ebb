"""The built-in mock provider: answers in-process, needs no key and no network.

It exists so that a newcomer can try the gateway with nothing configured, and so the benchmark suite
can measure the gateway alone. Its answers are deterministic functions of the request and are always
labelled as coming from the mock (`system_fingerprint: "bifrost-mock"`, `owned_by: "bifrost-mock"`).
"""

from __future__ import annotations

import hashlib
import itertools
import re
import struct
import time
from collections.abc import Mapping
from typing import Any

from runtime.config.model import KeyConfig, ProviderConfig
from runtime.errors import InvalidRequest, ProviderError
from runtime.providers.base import CHAT, COMPLETIONS, EMBEDDINGS, AdapterBase, ParsedResponse, UpstreamRequest, Usage
from runtime.providers.registry import ProviderSpec

# mock-embed-semantic: a deterministic, clearly fake "semantic" embedding (a feature-hashed bag of words
# and word pairs), so rewordings that share words are similar; for trying semantic caching offline.
MOCK_MODELS = ("mock-chat", "mock-embed", "mock-embed-semantic")
SEMANTIC_MODEL = "mock-embed-semantic"
FINGERPRINT = "bifrost-mock"
_EMBED_DIMENSIONS = 256
# Real embedding models stop at a few thousand dimensions; the bound keeps a client's `dimensions` from
# making the in-process mock allocate without limit (10**12 took the whole machine's memory).
MAX_EMBED_DIMENSIONS = 8192


def _words(text: str) -> int:
    return max(1, len(text.split()))


def _last_user_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                # The mock answers whatever it is sent, so a part's text is read only when it is a string.
                return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _prompt_words(body: dict[str, Any]) -> int:
    messages = body.get("messages")
    if isinstance(messages, list):
        return sum(_words(str(m.get("content", ""))) for m in messages if isinstance(m, dict))
    return _words(str(body.get("prompt", "")))


def _reply_text(model: str, body: dict[str, Any]) -> str:
    said = _last_user_text(body.get("messages")) or str(body.get("prompt", ""))
    said = " ".join(said.split())[:200]
    return f"[mock] Hello from Bifrost's built-in mock provider ({model}). You said: {said}"


def _embedding(text: str, dimensions: int) -> list[float]:
    """A unit-length vector derived from the text's SHA-256, stretched to `dimensions`."""
    seed = hashlib.sha256(text.encode()).digest()
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        block = hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        values.extend((v / 2**31) - 1.0 for v in struct.unpack(">8I", block))
        counter += 1
    values = values[:dimensions]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in values]


def _semantic_embedding(text: str, dimensions: int) -> list[float]:
    """Lowercase words and adjacent word pairs, each hashed to a dimension and a sign (feature hashing),
    normalised to unit length: texts sharing most words get a high cosine similarity."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    values = [0.0] * dimensions
    for feature in (*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))):
        h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "big")
        values[h % dimensions] += 1.0 if (h >> 63) & 1 else -1.0
    norm = sum(v * v for v in values) ** 0.5
    if not norm:  # no words at all: a fixed direction, so the vector is still unit length
        values[0], norm = 1.0, 1.0
    return [round(v / norm, 6) for v in values]


class MockAdapter(AdapterBase):
    kind = "mock"
    operations = frozenset((CHAT, COMPLETIONS, EMBEDDINGS))
    local = True

    def respond(self, op: str, body: dict[str, Any], model: str) -> ParsedResponse:
        created = int(time.time())
        if op == EMBEDDINGS:
            inputs = body.get("input")
            if isinstance(inputs, str):
                inputs = [inputs]
            if not isinstance(inputs, list) or not inputs:
                raise InvalidRequest("'input' must be a string or a non-empty list", param="input")
            dims = body.get("dimensions")
            if dims is None:
                dims = _EMBED_DIMENSIONS
            elif isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= MAX_EMBED_DIMENSIONS:
                raise InvalidRequest(
                    f"'dimensions' must be an integer from 1 to {MAX_EMBED_DIMENSIONS}", param="dimensions"
                )
            embed = _semantic_embedding if model == SEMANTIC_MODEL else _embedding
            vectors = [
                {"object": "embedding", "index": i, "embedding": embed(str(t), dims)} for i, t in enumerate(inputs)
            ]
            prompt = sum(_words(str(t)) for t in inputs)
            usage = Usage(prompt, 0)
            return ParsedResponse(
                {
                    "object": "list",
                    "data": vectors,
                    "model": model,
                    "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
                },
                usage,
            )
        text = _reply_text(model, body)
        usage = Usage(_prompt_words(body), _words(text))
        rid = "mock-" + hashlib.sha1(repr(sorted(body.items())).encode()).hexdigest()[:20]
        if op == COMPLETIONS:
            data = {
                "id": rid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "system_fingerprint": FINGERPRINT,
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
                "usage": usage.to_openai(),
            }
        else:
            data = {
                "id": rid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": FINGERPRINT,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage.to_openai(),
            }
        return ParsedResponse(data, usage)

    def respond_stream(self, op: str, body: dict[str, Any], model: str) -> tuple[list[dict[str, Any]], Usage]:
        """The whole answer as OpenAI stream chunks (one per word), plus its usage."""
        full = self.respond(op, body, model)
        data = full.data
        base = {"id": data["id"], "created": data["created"], "model": model, "system_fingerprint": FINGERPRINT}
        words = (data["choices"][0]["text"] if op == COMPLETIONS else data["choices"][0]["message"]["content"]).split(
            " "
        )
        chunks: list[dict[str, Any]] = []
        if op == COMPLETIONS:
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                chunks.append(
                    {
                        **base,
                        "object": "text_completion",
                        "choices": [{"text": piece, "index": 0, "logprobs": None, "finish_reason": None}],
                    }
                )
            chunks.append(
                {
                    **base,
                    "object": "text_completion",
                    "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}],
                }
            )
        else:
            kind = {"object": "chat.completion.chunk"}
            chunks.append(
                {
                    **base,
                    **kind,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": ""},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    ],
                }
            )
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                chunks.append(
                    {
                        **base,
                        **kind,
                        "choices": [{"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}],
                    }
                )
            chunks.append(
                {**base, **kind, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]}
            )
        assert full.usage is not None
        chunks.append({**base, "object": chunks[-1]["object"], "choices": [], "usage": full.usage.to_openai()})
        return chunks, full.usage

    # The network-facing half of the interface is never used for a local adapter.
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
        raise NotImplementedError("the mock provider answers in-process")

    def parse_response(self, op: str, model: str, raw: bytes) -> ParsedResponse:
        raise NotImplementedError("the mock provider answers in-process")

    def stream_translator(self, op: str, model: str) -> Any:
        raise NotImplementedError("the mock provider answers in-process")

    def parse_error(self, status: int, headers: Mapping[str, str], raw: bytes) -> ProviderError:
        return ProviderError("mock provider error", status=status)

    def list_models(self, provider: ProviderConfig) -> list[str]:
        return list(MOCK_MODELS)

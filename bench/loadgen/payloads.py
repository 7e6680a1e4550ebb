"""Request bodies and raw HTTP/1.1 request bytes, built once per run.

The same logical request is sent to every target; only the model name differs, because each target
names the mock's model its own way (Bifrost ``openai/gpt-4o-mini``, LiteLLM its ``model_name`` alias,
the mock itself anything).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

_SMALL_PROMPT = "Summarise the benefits of connection pooling in two sentences."
# ~10 KB of prompt, the published tool's "big payload" idea: exercises body parsing and copying.
_BIG_PROMPT = " ".join(f"Paragraph {i}: the gateway forwards this text unchanged." for i in range(180))


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A benchmarkable operation: URL path, whether it streams, and the key a good body has."""

    name: str
    path: str
    stream: bool
    expect: str


ENDPOINTS: dict[str, Endpoint] = {
    "chat": Endpoint("chat", "/v1/chat/completions", False, "choices"),
    "chat_stream": Endpoint("chat_stream", "/v1/chat/completions", True, "choices"),
    "completions": Endpoint("completions", "/v1/completions", False, "choices"),
    "embeddings": Endpoint("embeddings", "/v1/embeddings", False, "data"),
}


# A fixed-width placeholder in the prompt that `UniquePayloads` overwrites with a counter, so every request
# of a run asks something new (the `cache` scenario's misses) while its Content-Length stays the same.
UNIQUE_MARKER = "#" + "0" * 16
_UNIQUE_DIGITS = 16


def request_body(
    endpoint: Endpoint, model: str, *, big: bool = False, max_tokens: int = 150, unique: bool = False
) -> bytes:
    """The JSON body for ``endpoint`` addressed to ``model``; with ``unique`` its prompt starts with
    UNIQUE_MARKER (see UniquePayloads)."""
    prompt = _BIG_PROMPT if big else _SMALL_PROMPT
    if unique:
        prompt = f"Request {UNIQUE_MARKER}. {prompt}"
    body: dict[str, object]
    if endpoint.name in ("chat", "chat_stream"):
        body = {
            "model": model,
            "messages": [
                {"role": "system", "content": "You are a concise assistant."},
                {"role": "user", "content": prompt},
            ],
            "max_tokens": max_tokens,
        }
        if endpoint.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
    elif endpoint.name == "completions":
        body = {"model": model, "prompt": prompt, "max_tokens": max_tokens}
    else:
        body = {"model": model, "input": prompt}
    return json.dumps(body, separators=(",", ":")).encode()


def http_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """A complete keep-alive POST request, ready to write to a socket. `headers` are added; an
    `Authorization` among them replaces the default placeholder key (a virtual key, say)."""
    extra = headers or {}
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        "Accept: */*",
    ]
    if not any(k.lower() == "authorization" for k in extra):
        lines.append("Authorization: Bearer sk-bench-not-a-secret")
    lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class UniquePayloads:
    """Request bytes whose prompt counter changes on every call: `base`, `base + 1`, ... written over
    UNIQUE_MARKER's digits in place, so no two requests of a run (several workers: distinct bases) are
    the same prompt. Costs one small bytes copy per request."""

    __slots__ = ("_at", "_buf", "_n")

    def __init__(self, payload: bytes, base: int) -> None:
        at = payload.find(UNIQUE_MARKER.encode())
        if at < 0:
            raise ValueError("payload has no UNIQUE_MARKER (build its body with unique=True)")
        self._buf = bytearray(payload)
        self._at = at + 1
        self._n = base

    def next(self) -> bytes:
        self._buf[self._at : self._at + _UNIQUE_DIGITS] = b"%016d" % (self._n % 10**_UNIQUE_DIGITS)
        self._n += 1
        return bytes(self._buf)


def with_fault(body: bytes, fault: str) -> bytes:
    """``body`` (a chat request) whose last message asks the mock for ``fault`` (``bench-fault:<kind>``,
    see mock_provider.FAULTS). In the prompt rather than a header, so it passes through any gateway."""
    obj = json.loads(body)
    obj["messages"][-1]["content"] += f" [bench-fault:{fault}]"
    return json.dumps(obj, separators=(",", ":")).encode()


def as_stream(body: bytes) -> bytes:
    """A chat request body asking for the same answer as SSE (with the usage chunk)."""
    obj = json.loads(body)
    obj["stream"] = True
    obj["stream_options"] = {"include_usage": True}
    return json.dumps(obj, separators=(",", ":")).encode()


def as_plain(body: bytes) -> bytes:
    """A chat request body asking for a plain JSON answer."""
    obj = json.loads(body)
    obj.pop("stream", None)
    obj.pop("stream_options", None)
    return json.dumps(obj, separators=(",", ":")).encode()


FAULT_KINDS = ("timeout", "reset", "cut", "disconnect")


class FaultMix:
    """The soak's request mix: each request streams with probability ``stream_share`` and gets a fault
    with probability ``fault_rate``, the kind drawn evenly from FAULT_KINDS ("cut" always streams: a cut
    is a stream's fault). Seeded, so a run's mix is reproducible; the request records what it drew."""

    __slots__ = ("_payloads", "_rnd", "fault_rate", "stream_share")

    def __init__(self, payloads: dict[tuple[bool, str], bytes], stream_share: float, fault_rate: float, seed: int):
        import random

        self._payloads = payloads
        self._rnd = random.Random(seed)
        self.stream_share = stream_share
        self.fault_rate = fault_rate

    @staticmethod
    def payloads(
        host: str, port: int, path: str, body: bytes, headers: dict[str, str]
    ) -> dict[tuple[bool, str], bytes]:
        """Request bytes for every (stream, fault) pair; fault "" is a normal request."""
        out = {}
        for stream in (False, True):
            base = as_stream(body) if stream else as_plain(body)
            for fault in ("", *FAULT_KINDS):
                out[(stream, fault)] = http_request(
                    host, port, path, with_fault(base, fault) if fault else base, headers
                )
        return out

    def next(self) -> tuple[bool, str, bytes]:
        rnd = self._rnd.random
        fault = FAULT_KINDS[int(rnd() * len(FAULT_KINDS)) % len(FAULT_KINDS)] if rnd() < self.fault_rate else ""
        stream = fault == "cut" or rnd() < self.stream_share
        return stream, fault, self._payloads[(stream, fault)]

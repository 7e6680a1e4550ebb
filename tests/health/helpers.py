"""What the health tests share: configs with breakers, a request, the provider view, /metrics."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import openai
from fakes import FakeOpenAI, Reply
from harness import Gateway, custom_provider, make_config, openai_provider

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
MESSAGES = [{"role": "user", "content": "health"}]
SERVER_ERROR = Reply.error(500, "The server had an error while processing your request.", "server_error")


def providers(primary: FakeOpenAI, backup: FakeOpenAI | None = None, **breaker: Any) -> dict[str, Any]:
    """`openai` on `primary` and (optionally) `backup` (a custom OpenAI-format provider) on `backup`,
    both with `circuit_breaker` = `breaker`."""
    entries: dict[str, Any] = {"openai": openai_provider(primary.url)}
    if backup is not None:
        entries["backup"] = custom_provider(backup.url, ("sk-fake-2",))
    for entry in entries.values():
        entry["circuit_breaker"] = dict(breaker)
    return make_config(entries)


def ask(gateway: Gateway, model: str = "openai/gpt-4o-mini", fallbacks: list[str] | None = None) -> str:
    """One chat request on a fresh connection (so, with several workers, any worker may take it); the
    answer's text, which names the fake that answered ("fake-openai: ..." / "fake-openai-2: ...")."""
    extra = {"fallbacks": fallbacks} if fallbacks else None
    with gateway.client() as client:
        answer = client.chat.completions.create(model=model, messages=MESSAGES, extra_body=extra)  # type: ignore[arg-type]
    return answer.choices[0].message.content or ""


def ask_status(gateway: Gateway, model: str = "openai/gpt-4o-mini", fallbacks: list[str] | None = None) -> int:
    try:
        ask(gateway, model, fallbacks)
    except openai.APIStatusError as err:
        return err.status_code
    return 200


def chats(fake: FakeOpenAI) -> int:
    return len(fake.requests_to("/chat/completions"))


def get_json(gateway: Gateway, path: str) -> Any:
    with _OPENER.open(gateway.url(path), timeout=30) as response:
        return json.loads(response.read())


def get_text(gateway: Gateway, path: str) -> str:
    with _OPENER.open(gateway.url(path), timeout=30) as response:
        return response.read().decode()


def health_of(gateway: Gateway, provider: str = "openai") -> dict[str, Any]:
    return get_json(gateway, f"/api/providers/{provider}")["health"]  # type: ignore[no-any-return]

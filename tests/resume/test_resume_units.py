"""The pure parts of mid-stream recovery: each provider's prefill dialect, and how a continuation's
chunks are fitted onto what the client already has (runtime/core/resume.py)."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.core.resume import (
    CONTINUE_FINAL,
    PREFIX,
    TRAILING_ASSISTANT,
    Continued,
    prefilled,
)
from runtime.providers.registry import PROVIDER_SPECS

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "stream": True}


def test_each_documented_dialect() -> None:
    anthropic, trimmed = prefilled(BODY, TRAILING_ASSISTANT, "Alpha beta ") or ({}, -1)
    assert anthropic["messages"][-1] == {"role": "assistant", "content": "Alpha beta"}
    assert trimmed == 1, "Anthropic refuses trailing whitespace: it is left out and remembered"
    mistral, _ = prefilled(BODY, PREFIX, "Alpha beta ") or ({}, -1)
    assert mistral["messages"][-1] == {"role": "assistant", "content": "Alpha beta ", "prefix": True}
    vllm, _ = prefilled(BODY, CONTINUE_FINAL, "Alpha beta ") or ({}, -1)
    assert vllm["messages"][-1] == {"role": "assistant", "content": "Alpha beta "}
    assert vllm["continue_final_message"] is True and vllm["add_generation_prompt"] is False
    assert BODY["messages"] == [{"role": "user", "content": "Hi"}], "the original body is left as it was"


def test_requests_that_cannot_carry_a_prefill() -> None:
    ends_with_assistant = {**BODY, "messages": [*BODY["messages"], {"role": "assistant", "content": "x"}]}
    assert prefilled(ends_with_assistant, PREFIX, "y") is None
    assert prefilled({**BODY, "thinking": {"type": "enabled"}}, TRAILING_ASSISTANT, "y") is None


def test_the_capability_table() -> None:
    assert PROVIDER_SPECS["anthropic"].prefill == TRAILING_ASSISTANT
    assert PROVIDER_SPECS["mistral"].prefill == PREFIX
    assert PROVIDER_SPECS["vllm"].prefill == CONTINUE_FINAL
    assert PROVIDER_SPECS["sglang"].prefill == CONTINUE_FINAL
    assert PROVIDER_SPECS["openai"].prefill is None


class _Inner:
    def __init__(self, batches: list[list[dict[str, Any]]]) -> None:
        self.first = batches[0]
        self._rest = batches[1:]
        self.usage = None
        self.arrived_ns = 0

    async def next(self) -> list[dict[str, Any]] | None:
        return self._rest.pop(0) if self._rest else None

    def close(self) -> None:
        pass


def _chunk(content: str | None = None, role: bool = False, finish: str | None = None) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    return {"id": "new", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


async def _drain(stream: Continued) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while (chunks := await stream.next()) is not None:
        out.extend(chunks)
    return out


async def test_a_prefill_continuation_drops_the_role_chunk_keeps_the_id_and_skips_the_left_out_space() -> None:
    inner = _Inner([[_chunk("", role=True), _chunk(" gamma")], [_chunk(" delta"), _chunk(finish="stop")]])
    out = await _drain(Continued(inner, "first-id", "", 1))
    assert [c["choices"][0]["delta"].get("content") for c in out] == ["gamma", " delta", None]
    assert {c["id"] for c in out} == {"first-id"}
    assert all("role" not in c["choices"][0]["delta"] for c in out)


class _Owner:
    def __init__(self) -> None:
        self.error = RuntimeError("the original failure")

    def diverged(self, stream: Any) -> Exception:
        return self.error


async def test_a_replay_passes_on_only_what_follows_the_delivered_text() -> None:
    inner = _Inner(
        [[_chunk("", role=True), _chunk("Alpha ")], [_chunk("be"), _chunk("ta gam"), _chunk("ma", finish="stop")]]
    )
    out = await _drain(Continued(inner, "id", "Alpha beta", 0, _Owner()))  # type: ignore[arg-type]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in out) == " gamma"


@pytest.mark.parametrize(
    "batches",
    [
        [[_chunk("Alpha "), _chunk("gamma")]],  # a different word
        [[_chunk("Alpha", finish="stop")]],  # ends before repeating it all
        [[_chunk("Alpha ")]],  # the stream ends before repeating it all
    ],
)
async def test_a_replay_that_differs_raises_the_original_failure(batches: list[list[dict[str, Any]]]) -> None:
    owner = _Owner()
    with pytest.raises(RuntimeError) as err:
        await _drain(Continued(_Inner(batches), "id", "Alpha beta", 0, owner))  # type: ignore[arg-type]
    assert err.value is owner.error

"""The holdback filter on scripted chunk batches: a card number split across chunks is masked, text is
released once it is a window behind, other chunk fields keep their order, finish_reason flushes, a block
mid-stream raises, and whole-text (remote) checks run once at the end while the tail is held."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.core.context import RequestContext
from runtime.errors import GuardrailBlocked
from runtime.guardrails.engine import GuardrailEngine, RequestState
from runtime.guardrails.stream import WINDOW
from tests.guardrails.test_engine_rules import CARD, cards, config, hook, rule, webhook, words

__all__ = ["hook"]  # the loopback webhook fixture, shared


def chunk(content: str | None = None, finish: str | None = None, index: int = 0, **delta: Any) -> dict[str, Any]:
    d: dict[str, Any] = dict(delta)
    if content is not None:
        d["content"] = content
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": index, "delta": d, "finish_reason": finish}],
    }


def texts(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


def make_filter(
    providers: list[dict[str, Any]], rules: list[dict[str, Any]]
) -> tuple[Any, RequestContext, RequestState]:
    engine = GuardrailEngine(config(providers, rules))
    ctx = RequestContext("s1", "chat")
    ctx.body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    state = RequestState()
    guard = engine.output_guard(ctx, None, state)
    assert guard is not None
    return guard.stream_filter(ctx), ctx, state


async def test_card_split_across_chunks_is_masked() -> None:
    f, ctx, state = make_filter([cards()], [rule(1, "mask", [1])])
    sent: list[dict[str, Any]] = []
    sent += await f.feed([chunk("", role="assistant")])
    for piece in ["Your card: 4111", " 1111 11", "11 1", "111. Thanks!"]:
        sent += await f.feed([chunk(piece)])
    sent += await f.feed([chunk(finish="stop")])
    sent += await f.finish()
    assert texts(sent) == "Your card: [REDACTED:regex:card]. Thanks!"
    assert sent[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert sent[-1]["choices"][0]["finish_reason"] == "stop"  # the flush comes before the finishing chunk
    assert ctx.guardrails and ctx.guardrails[0]["count"] == 1 and CARD not in str(ctx.guardrails)
    assert CARD in state.values


async def test_text_is_released_a_window_behind_and_never_cuts_a_finding() -> None:
    f, _, _ = make_filter([cards()], [rule(1, "mask", [1])])
    filler = "a" * (WINDOW - 5)
    first = await f.feed([chunk("start " + filler)])
    assert texts(first) == "start "[: len("start " + filler) - WINDOW]  # only what is a window behind
    # A card straddling the cut: the cut moves back to the card's start, so it is never half released.
    second = await f.feed([chunk(" 4111 1111 1111 1111 " + "b" * (WINDOW - 10))])
    released = texts(first) + texts(second)
    assert "4111" not in released
    rest = await f.finish()
    assert released + texts(rest) == "start " + filler + " [REDACTED:regex:card] " + "b" * (WINDOW - 10)


async def test_long_stream_releases_as_it_goes_with_bounded_holdback() -> None:
    f, _, _ = make_filter([cards()], [rule(1, "mask", [1])])
    out = ""
    for i in range(100):
        out += texts(await f.feed([chunk(f"word{i:03d} ")]))
        assert len("".join(f"word{j:03d} " for j in range(i + 1))) - len(out) < 2 * WINDOW
    out += texts(await f.finish())
    assert out == "".join(f"word{j:03d} " for j in range(100))


async def test_other_fields_and_order_are_kept_and_usage_passes() -> None:
    f, _, _ = make_filter([cards()], [rule(1, "mask", [1])])
    tool = {"tool_calls": [{"index": 0, "id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    batch = [chunk("hi ", role="assistant"), chunk(None, **tool), chunk("there", finish="stop")]
    usage = {"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 1}}
    sent = await f.feed(batch) + await f.feed([usage]) + await f.finish()
    assert sent[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "tool_calls" in sent[1]["choices"][0]["delta"]
    assert texts(sent) == "hi there"
    assert [c["choices"][0]["finish_reason"] if c["choices"] else "usage" for c in sent][-2:] == ["stop", "usage"]


async def test_two_choices_are_held_separately() -> None:
    f, _, _ = make_filter([cards()], [rule(1, "mask", [1])])
    sent = await f.feed([chunk("4111 1111 ", index=0), chunk("safe ", index=1)])
    sent += await f.feed([chunk("1111 1111", index=0), chunk("text", index=1)])
    sent += await f.feed([chunk(finish="stop", index=0), chunk(finish="stop", index=1)])
    sent += await f.finish()
    by: dict[int, str] = {}
    for c in sent:
        for ch in c["choices"]:
            by[ch["index"]] = by.get(ch["index"], "") + (ch["delta"].get("content") or "")
    assert by == {0: "[REDACTED:regex:card]", 1: "safe text"}


async def test_block_mid_stream_raises_and_names_the_rule() -> None:
    f, ctx, _ = make_filter([words()], [rule(1, "no-codenames", [2])])
    await f.feed([chunk("the project is fal")])
    with pytest.raises(GuardrailBlocked, match="no-codenames") as err:
        await f.feed([chunk("con, launching"), chunk(finish="stop")])
    assert "falcon" not in err.value.message
    assert ctx.guardrails and ctx.guardrails[0]["action"] == "block"


async def test_flagged_values_go_through_but_are_kept_for_the_scrub() -> None:
    f, ctx, state = make_filter([cards(action="flag")], [rule(1, "flag", [1])])
    sent = await f.feed([chunk(f"card {CARD}")]) + await f.finish()
    assert texts(sent) == f"card {CARD}"
    assert CARD in state.values and ctx.guardrails and ctx.guardrails[0]["action"] == "flag"


async def test_text_completion_chunks_are_held_and_masked_too() -> None:
    f, _, _ = make_filter([cards()], [rule(1, "mask", [1])])

    def piece(text: str, finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "cmpl-1",
            "object": "text_completion",
            "choices": [{"index": 0, "text": text, "finish_reason": finish}],
        }

    sent = await f.feed([piece("card 4111 1111 ")]) + await f.feed([piece("1111 1111 ok")])
    sent += await f.feed([piece("", "stop")]) + await f.finish()
    assert "".join(c["choices"][0]["text"] for c in sent) == "card [REDACTED:regex:card] ok"
    assert sent[-1]["choices"][0]["finish_reason"] == "stop"


async def test_remote_output_check_runs_once_at_the_end_with_the_tail_held(hook: dict[str, Any]) -> None:
    hook_provider = webhook(3, hook["url"], "fail_closed", timeout=5)
    for verdict in ("allow", "block"):
        hook["verdict"], hook["calls"] = verdict, 0
        f, _, _ = make_filter([hook_provider], [rule(3, "ask-hook", [3], apply_to="output")])
        try:
            words = "".join(f"word{i:03d} " for i in range(60))  # 480 characters, over the window
            sent = await f.feed([chunk(words[:240])]) + await f.feed([chunk(words[240:])])
            assert 0 < len(texts(sent)) <= len(words) - WINDOW  # released as it went, the last window held
            sent += await f.feed([chunk(finish="stop")])
            assert not any(c["choices"][0]["finish_reason"] for c in sent)  # the finishing chunk is held too
            assert hook["calls"] == 0  # nothing remote until the end
            if verdict == "allow":
                rest = await f.finish()
                assert texts(sent + rest) == words and rest[-1]["choices"][0]["finish_reason"] == "stop"
            else:
                with pytest.raises(GuardrailBlocked, match="ask-hook"):
                    await f.finish()
            assert hook["calls"] == 1
        finally:
            await f.guard.rules[0][1][0].detector.close()

"""Which texts the guardrails read (runtime/guardrails/text.py), on the real engine with a regex card
detector: reasoning and refusals of a whole answer, the forwarded input fields (prediction, legacy
function_call, refusal parts, tool descriptions), and a value split across the text parts of one
message, masked piece by piece. Texts of separate messages are not joined."""

from __future__ import annotations

import json
from typing import Any

from runtime.core.context import RequestContext
from runtime.errors import GuardrailBlocked
from runtime.guardrails.engine import GuardrailEngine, RequestState
from runtime.guardrails.text import JoinedSlot, input_slots, output_slots, redact
from runtime.guardrails.types import Finding
from runtime.providers.base import ParsedResponse
from tests.guardrails.test_engine_rules import CARD, cards, config, rule, words

MASK = "[REDACTED:regex:card]"


def request(*messages: dict[str, Any], **extra: Any) -> RequestContext:
    ctx = RequestContext("req-1", "chat")
    ctx.body = {"model": "openai/gpt-4o", "messages": list(messages), **extra}
    ctx.headers = {}  # type: ignore[assignment]
    return ctx


async def masked_input(ctx: RequestContext) -> RequestState:
    engine = GuardrailEngine(config([cards()], [rule(1, "mask", [1])]))
    state = RequestState()
    await engine.check_input(ctx, None, state)
    return state


async def test_a_card_split_across_two_text_parts_is_masked_in_each_part() -> None:
    ctx = request(
        {
            "role": "user",
            "content": [{"type": "text", "text": "card 4111 1111 "}, {"type": "text", "text": "1111 1111"}],
        }
    )
    state = await masked_input(ctx)
    parts = ctx.body["messages"][0]["content"]
    assert parts == [{"type": "text", "text": f"card {MASK}"}, {"type": "text", "text": ""}]
    assert CARD in state.values and ctx.guardrails and ctx.guardrails[0]["count"] == 1


async def test_parts_keep_their_own_text_around_masks_and_images_stay() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    ctx = request(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "first 4111 "},
                image,
                {"type": "text", "text": "1111 1111 1111 then "},
                {"type": "text", "text": f"more {CARD} end"},
            ],
        }
    )
    await masked_input(ctx)
    parts = ctx.body["messages"][0]["content"]
    assert parts[0]["text"] == f"first {MASK}" and parts[1] == image
    assert parts[2]["text"] == " then " and parts[3]["text"] == f"more {MASK} end"


async def test_separate_messages_are_not_joined() -> None:
    ctx = request({"role": "user", "content": "card 4111 1111 "}, {"role": "user", "content": "1111 1111"})
    await masked_input(ctx)
    assert [m["content"] for m in ctx.body["messages"]] == ["card 4111 1111 ", "1111 1111"]


async def test_forwarded_input_fields_are_checked() -> None:
    ctx = request(
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "function_call": {"name": "pay", "arguments": json.dumps({"c": CARD})}},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": f"no {CARD}"}]},
        {"role": "assistant", "content": None, "refusal": f"won't {CARD}"},
        prediction={"type": "content", "content": f"predicted {CARD}"},
        tools=[{"type": "function", "function": {"name": "pay", "description": f"uses {CARD}", "parameters": {}}}],
    )
    await masked_input(ctx)
    body = ctx.body
    assert json.loads(body["messages"][1]["function_call"]["arguments"]) == {"c": MASK}
    assert body["messages"][2]["content"][0]["refusal"] == f"no {MASK}"
    assert body["messages"][3]["refusal"] == f"won't {MASK}"
    assert body["prediction"]["content"] == f"predicted {MASK}"
    assert body["tools"][0]["function"]["description"] == f"uses {MASK}"
    assert CARD not in json.dumps(body)


async def test_prediction_as_text_parts_is_joined_too() -> None:
    ctx = request(
        {"role": "user", "content": "hi"},
        prediction={
            "type": "content",
            "content": [{"type": "text", "text": "4111 1111"}, {"type": "text", "text": " 1111 1111"}],
        },
    )
    await masked_input(ctx)
    assert ctx.body["prediction"]["content"] == [{"type": "text", "text": MASK}, {"type": "text", "text": ""}]


async def test_a_block_finds_a_word_split_across_parts() -> None:
    engine = GuardrailEngine(config([words()], [rule(1, "stop", [2])]))
    ctx = request(
        {"role": "user", "content": [{"type": "text", "text": "the blue "}, {"type": "text", "text": "bird"}]}
    )
    try:
        await engine.check_input(ctx, None, RequestState())
    except GuardrailBlocked as err:
        assert "bird" not in err.message
    else:
        raise AssertionError("not blocked")


async def test_whole_answer_reasoning_and_refusal_are_checked() -> None:
    engine = GuardrailEngine(config([cards()], [rule(1, "mask", [1])]))
    ctx = request({"role": "user", "content": "hi"})
    guard = engine.output_guard(ctx, None)
    message = {"role": "assistant", "content": "ok", "reasoning_content": f"the card is {CARD}", "refusal": CARD}
    result = await guard.check_response(
        ctx, ParsedResponse({"choices": [{"index": 0, "message": message}]}, None, raw=b"{}")
    )
    got = result.data["choices"][0]["message"]
    assert got == {"role": "assistant", "content": "ok", "reasoning_content": f"the card is {MASK}", "refusal": MASK}
    assert result.raw is None


def test_slot_names_and_order() -> None:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    }
    slots = input_slots(body)
    assert len(slots) == 1 and isinstance(slots[0], JoinedSlot) and slots[0].get() == "ab"
    data = {"choices": [{"message": {"content": "c", "reasoning_content": "r", "refusal": "x"}}]}
    assert [s.get() for s in output_slots(data)] == ["c", "r", "x"]


def test_a_plain_replacement_written_to_a_joined_slot_leaves_no_original_piece() -> None:
    """The log scrub writes back plain text (values replaced): the changed stretch goes in the part where
    it starts, the parts around keep their text."""
    content = [{"type": "text", "text": t} for t in ("keep ", "4111 ", "1111", " tail")]
    body: dict[str, Any] = {"messages": [{"content": content}]}
    slot = input_slots(body)[0]
    slot.set(slot.get().replace("4111 1111", "[REDACTED]"))
    assert [p["text"] for p in content] == ["keep ", "[REDACTED]", "", " tail"]
    slot.set("replaced")
    assert "".join(p["text"] for p in content) == "replaced" and "4111" not in str(content)


def test_a_mask_spanning_three_parts_goes_in_the_first() -> None:
    body: dict[str, Any] = {
        "messages": [{"content": [{"type": "text", "text": t} for t in ("x 41", "11 1111 1111 ", "1111 y")]}]
    }
    slot = input_slots(body)[0]
    text = slot.get()
    start = text.index("41")
    slot.set(redact(text, [Finding("regex:card", 0, start, start + len(CARD))]))
    assert [p["text"] for p in body["messages"][0]["content"]] == [f"x {MASK}", "", " y"]

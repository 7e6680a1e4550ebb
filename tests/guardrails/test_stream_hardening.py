"""The holdback under pressure (runtime/guardrails/stream.py): reasoning and refusal deltas are held and
checked as their own channels; a finding that keeps growing past the window holds at most MAX_HOLD more
(then its known part is masked, or the stream blocked); text is scanned a bounded number of times, not
once per chunk; a detector's `partial` hint holds an unfinished candidate; `restart()` drops the held,
never sent, text when a broken stream continues on another target."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from runtime.errors import GuardrailBlocked
from runtime.guardrails.stream import MAX_HOLD, WINDOW, StreamFilter
from runtime.guardrails.types import Finding, Subject
from tests.guardrails.test_engine_rules import CARD, cards, provider, rule
from tests.guardrails.test_engine_stream import chunk, make_filter, texts

MASK = "[REDACTED:regex:card]"
PEM = "-----BEGIN PRIVATE KEY-----\n"


def channel(chunks: list[dict[str, Any]], field: str) -> str:
    return "".join(c["choices"][0]["delta"].get(field) or "" for c in chunks if c.get("choices"))


async def run(f: StreamFilter, pieces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    for piece in pieces:
        sent += await f.feed([piece])
    return sent + await f.finish()


async def test_a_card_split_across_reasoning_chunks_is_masked_and_content_is_its_own_channel() -> None:
    f, ctx, _ = make_filter([cards()], [rule(1, "mask", [1])])
    pieces = [chunk("", role="assistant")]
    pieces += [chunk(reasoning_content=p) for p in ["thinking: 4111 11", "11 1111 ", "1111 done"]]
    pieces += [chunk("answer 4111 1111 "), chunk("1111 1111 ok"), chunk(finish="stop")]
    sent = await run(f, pieces)
    assert channel(sent, "reasoning_content") == f"thinking: {MASK} done"
    assert channel(sent, "content") == f"answer {MASK} ok"
    assert sent[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert sent[-1]["choices"][0]["finish_reason"] == "stop"
    # the reasoning is flushed before the content, both before the finishing chunk
    fields = [next(iter(c["choices"][0]["delta"])) for c in sent[1:-1]]
    assert fields == ["reasoning_content", "content"]
    assert ctx.guardrails and ctx.guardrails[0]["count"] == 2 and CARD not in str(ctx.guardrails)


async def test_refusal_deltas_are_held_and_masked() -> None:
    f, _, _ = make_filter([cards()], [rule(1, "mask", [1])])
    sent = await run(f, [chunk(refusal="cannot use 4111 1111"), chunk(refusal=" 1111 1111"), chunk(finish="stop")])
    assert channel(sent, "refusal") == f"cannot use {MASK}"


async def test_long_reasoning_is_released_as_it_goes() -> None:
    f, _, _ = make_filter([cards()], [rule(1, "mask", [1])])
    out = ""
    for i in range(200):
        out += channel(await f.feed([chunk(reasoning_content=f"step{i:03d} ")]), "reasoning_content")
    assert len("".join(f"step{j:03d} " for j in range(200))) - len(out) < 2 * WINDOW


def secrets(action: str) -> dict[str, Any]:
    return provider(3, "secrets", "keys", action)


async def test_a_finding_that_keeps_growing_holds_at_most_max_hold_then_its_known_part_is_masked() -> None:
    """A finding that matches to the end of the text straddles every cut (here a user pattern with an
    unbounded run, as RE2 allows). Before, the whole rest of the answer was held (and rescanned on every
    chunk) until the stream ended; now at most MAX_HOLD more, and what is released of it is masked."""
    dump = provider(4, "regex", "dumps", "redact", patterns=[{"pattern": r"DUMP:[A-Z0-9\n]+", "description": "dump"}])
    f, _, _ = make_filter([dump], [rule(1, "dumps", [4])])
    body = "MIIEVQIBADANBGKQHKIG9W0BAQEFAASC\n"
    sent = await f.feed([chunk("Header: DUMP:")])
    most = 0
    for _ in range(600):
        sent += await f.feed([chunk(body)])
        most = max(most, sum(len(t) for t in f.held.values()))
    assert most <= f.window + MAX_HOLD + len(body)
    released = channel(sent, "content")
    assert released.startswith("Header: [REDACTED:") and "DUMP" not in released
    assert "VQIBADAN" not in released  # each held stretch of the dump went under a mask
    sent += await f.feed([chunk(" -- end\nafter"), chunk(finish="stop")])
    sent += await f.finish()
    assert channel(sent, "content").endswith("] -- end\nafter") and "VQIBADAN" not in channel(sent, "content")


async def test_a_block_rule_stops_the_stream_at_the_bound() -> None:
    f, ctx, _ = make_filter([secrets("block")], [rule(1, "keys", [3])])
    with pytest.raises(GuardrailBlocked) as err:
        await f.feed([chunk("Header: " + PEM)])
        for _ in range(600):
            await f.feed([chunk("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n")])
    assert "MIIE" not in err.value.message and ctx.guardrails and ctx.guardrails[0]["action"] == "block"


class Counting:
    """A detector that counts the characters it was given (delegating to a real one)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.remote = inner.remote
        self.streamable = inner.streamable
        self.timeout_s = inner.timeout_s
        self.longest = getattr(inner, "longest", WINDOW)
        self.scanned = 0

    def scan(self, subject: Subject) -> list[Finding]:
        self.scanned += sum(len(t) for t in subject.texts)
        result: list[Finding] = self.inner.scan(subject)
        return result


class Hinting(Counting):
    """Adds the optional `partial` method: an `eyJ...` run at the end of the text may become a token."""

    def partial(self, text: str) -> list[tuple[int, int]]:
        m = re.search(r"eyJ[\w.-]*\Z", text)
        return [(m.start(), m.end())] if m else []


class Broken(Counting):
    def partial(self, text: str) -> list[tuple[int, int]]:
        raise ValueError("hint failed")


def wrapped(f: StreamFilter, kind: type[Counting]) -> Counting:
    rules = []
    made = None
    for r, providers in f.guard.rules:
        swapped = []
        for p in providers:
            made = kind(p.detector)
            swapped.append(dataclasses.replace(p, detector=made))
        rules.append((r, tuple(swapped)))
    f.guard.rules = rules
    assert made is not None
    return made


async def test_one_character_chunks_are_not_rescanned_once_per_chunk() -> None:
    f, _, _ = make_filter([cards()], [rule(1, "mask", [1])])
    counter = wrapped(f, Counting)
    text = ("word " * 1000)[:5000]
    sent = []
    for ch in text:
        sent += await f.feed([chunk(ch)])
    sent += await f.finish()
    assert texts(sent) == text
    assert counter.scanned <= 3 * len(text)  # was about WINDOW times len(text)


async def test_a_long_hold_is_rescanned_a_bounded_number_of_times() -> None:
    f, _, _ = make_filter([secrets("redact")], [rule(1, "keys", [3])])
    counter = wrapped(f, Counting)
    await f.feed([chunk("Header: " + PEM)])
    fed = len("Header: " + PEM)
    for _ in range(20000 // 10):
        await f.feed([chunk("A" * 9 + "\n")])
        fed += 10
    assert counter.scanned <= 8 * fed  # each hold grows by half between scans, and is bounded


async def test_a_partial_hint_holds_an_unfinished_candidate_and_stays_bounded() -> None:
    f, _, _ = make_filter([cards()], [rule(1, "mask", [1])])
    wrapped(f, Hinting)
    sent = await f.feed([chunk("token: eyJ")])
    for _ in range(40):
        sent += await f.feed([chunk("abcdefghij")])
    assert channel(sent, "content") == "token: "  # the candidate is held though it is longer than the window
    for _ in range(MAX_HOLD // 10 + 20):
        sent += await f.feed([chunk("abcdefghij")])
    assert sum(len(t) for t in f.held.values()) <= f.window + MAX_HOLD + 10
    sent += await f.finish()
    assert channel(sent, "content") == "token: eyJ" + "abcdefghij" * (40 + MAX_HOLD // 10 + 20)


async def test_a_failing_partial_hint_is_ignored() -> None:
    f, _, _ = make_filter([cards()], [rule(1, "mask", [1])])
    wrapped(f, Broken)
    sent = await run(f, [chunk(f"card {CARD} " + "x" * 300), chunk(finish="stop")])
    assert texts(sent) == f"card {MASK} " + "x" * 300


async def test_restart_drops_held_text_and_the_held_tail() -> None:
    f, _, _ = make_filter([cards()], [rule(1, "mask", [1])])
    first = await f.feed([chunk("a" * 300)])
    assert texts(first) == "a" * (300 - WINDOW)
    f.restart()
    rest = await run(f, [chunk("b" * 10), chunk(finish="stop")])
    assert texts(first + rest) == "a" * (300 - WINDOW) + "b" * 10  # the held 'a's were never sent: gone


async def test_restart_keeps_the_full_record_only_up_to_what_was_released() -> None:
    size = provider(4, "size", "long", "block", max_output_chars=250)
    f, _, _ = make_filter([cards(), size], [rule(1, "mask", [1]), rule(2, "long", [4])])
    first = await f.feed([chunk("a" * 200)])
    released = texts(first)
    assert released and len(released) < 200
    f.restart()
    assert {k: "".join(v) for k, v in f.full.items()} == {(0, "content"): released}
    # the continuation repeats nothing the client did not get: the whole answer stays under the limit
    rest = await run(f, [chunk("c" * (249 - len(released))), chunk(finish="stop")])
    assert texts(first + rest) == released + "c" * (249 - len(released))


async def test_a_resumed_stream_with_an_output_guard_repeats_nothing(
    start_gateway: Any, fake_openai: Any, fake_anthropic: Any
) -> None:
    """The gateway: the primary breaks mid-answer, the stream continues on the fallback from what the
    client received; the guard's held text must not be sent twice (review #10)."""
    from fakes import Reply

    from tests.resume.resume_helpers import FULL, MESSAGES, config, stream_raw, text_of

    guard = {
        "guardrail_providers": [
            {
                "id": 1,
                "provider_name": "pii",
                "policy_name": "cards",
                "config": {"entities": ["credit_card"], "action": "redact"},
            }
        ],
        "guardrail_rules": [
            {"id": 1, "name": "mask", "cel_expression": "true", "apply_to": "output", "provider_config_ids": [1]}
        ],
    }
    fake_openai.enqueue(Reply(content=FULL, cut_after=3))
    fake_anthropic.always(Reply(content=FULL))
    cfg = config(fake_openai.url, anthropic_url=fake_anthropic.url)
    cfg["guardrails_config"] = guard
    gw = start_gateway(cfg)
    body = {"model": "openai/gpt-4o", "messages": MESSAGES, "stream": True, "fallbacks": ["anthropic/claude-fake"]}
    events, _ = await stream_raw(gw, body)
    assert text_of(events) == FULL

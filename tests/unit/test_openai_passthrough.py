"""The streaming fast path's scanner (runtime/providers/openai_passthrough.py): whole events out, the
provider's bytes unchanged, and only usage, [DONE], errors and split surrogates looked at."""

from __future__ import annotations

import json

import pytest

from runtime.errors import ProviderError, UpstreamGarbage
from runtime.providers.openai_passthrough import OpenAIPassThrough


def event(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def chunk(content: str, finish: str | None = None) -> dict[str, object]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
        "usage": None,
    }


USAGE = {**chunk(""), "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}
COMMENT = b": keep-alive comment\n\n"
STREAM = event(chunk("hel")) + COMMENT + event(chunk("lo", "stop")) + event(USAGE) + b"data: [DONE]\n\n"


def feed_in_pieces(scanner: OpenAIPassThrough, data: bytes, size: int) -> bytes:
    out = b"".join(scanner.feed(data[i : i + size]) for i in range(0, len(data), size))
    return out + scanner.close()


@pytest.mark.parametrize("size", [1, 2, 7, 64, 10_000])
def test_every_split_of_the_stream_forwards_the_same_bytes_in_whole_events(size: int) -> None:
    scanner = OpenAIPassThrough(wants_usage=True)
    pieces = []
    for i in range(0, len(STREAM), size):
        out = scanner.feed(STREAM[i : i + size])
        assert not out or out.endswith(b"\n\n"), "only whole events are forwarded"
        pieces.append(out)
    assert b"".join(pieces) == STREAM
    assert scanner.finished
    assert scanner.usage is not None and scanner.usage.total_tokens == 8


def test_the_usage_chunk_the_client_did_not_ask_for_is_dropped_but_still_counted() -> None:
    scanner = OpenAIPassThrough(wants_usage=False)
    out = feed_in_pieces(scanner, STREAM, 10_000)
    assert out == event(chunk("hel")) + COMMENT + event(chunk("lo", "stop")) + b"data: [DONE]\n\n"
    assert scanner.usage is not None and scanner.usage.prompt_tokens == 3
    assert scanner.source == STREAM, "the log folds what the provider sent"


def test_an_error_event_is_a_provider_error() -> None:
    scanner = OpenAIPassThrough(wants_usage=False)
    assert scanner.feed(event(chunk("a"))) == event(chunk("a"))
    with pytest.raises(ProviderError) as info:
        scanner.feed(event({"error": {"message": "overloaded", "type": "server_error"}}))
    assert "overloaded" in info.value.message and info.value.status == 502


def test_the_word_error_inside_content_is_not_an_error() -> None:
    scanner = OpenAIPassThrough(wants_usage=False)
    data = event(chunk('{"error": 1} is what it said'))
    assert scanner.feed(data) == data


def test_a_non_json_usage_event_is_dropped_and_counted_and_the_stream_goes_on() -> None:
    scanner = OpenAIPassThrough(wants_usage=True)
    assert scanner.feed(b'data: {"usage": {oops}\n\n' + event(chunk("a"))) == event(chunk("a"))
    assert scanner.skipped == 1 and not scanner.finished


@pytest.mark.parametrize(
    "bad",
    [b"data: {truncated\n\n", b"data: <html>502 Bad Gateway</html>\n\n", b"data: \n\n", b"data: [1, 2]\n\n"],
)
@pytest.mark.parametrize("size", [1, 5, 10_000])
def test_a_malformed_event_is_skipped_and_counted_in_any_split(bad: bytes, size: int) -> None:
    scanner = OpenAIPassThrough(wants_usage=True)
    out = feed_in_pieces(scanner, event(chunk("a")) + bad + STREAM, size)
    assert out == event(chunk("a")) + STREAM
    assert scanner.skipped == 1 and scanner.finished


def test_a_clean_end_after_the_finish_reason_is_complete_and_the_client_gets_done() -> None:
    scanner = OpenAIPassThrough(wants_usage=True)
    body = event(chunk("hel")) + event(chunk("lo", "stop")) + event(USAGE)
    assert feed_in_pieces(scanner, body, 7) == body + b"data: [DONE]\n\n"
    assert scanner.finished and scanner.usage is not None


def test_a_spaced_finish_reason_counts_too() -> None:
    scanner = OpenAIPassThrough(wants_usage=False)
    body = b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}\n\n'
    assert feed_in_pieces(scanner, body, 10_000) == body + b"data: [DONE]\n\n"
    assert scanner.finished


def test_a_body_that_ends_before_any_finish_reason_is_not_complete() -> None:
    scanner = OpenAIPassThrough(wants_usage=True)
    assert feed_in_pieces(scanner, event(chunk("hel")) + event(chunk("lo")), 3) == event(chunk("hel")) + event(
        chunk("lo")
    )
    assert not scanner.finished


def test_nothing_after_done_is_forwarded() -> None:
    scanner = OpenAIPassThrough(wants_usage=True)
    assert scanner.feed(b"data: [DONE]\n\n" + event(chunk("late"))) == b"data: [DONE]\n\n"
    assert scanner.feed(event(chunk("later"))) == b""


def test_crlf_streams_are_forwarded_with_lf_line_ends() -> None:
    scanner = OpenAIPassThrough(wants_usage=True)
    crlf = STREAM.replace(b"\n", b"\r\n")
    assert feed_in_pieces(scanner, crlf, 3) == STREAM
    assert scanner.finished


def test_a_surrogate_pair_split_across_events_becomes_replacement_characters_not_lone_surrogates() -> None:
    scanner = OpenAIPassThrough(wants_usage=True)
    data = b'data: {"choices":[{"index":0,"delta":{"content":"\\ud83d"}}]}\n\n'
    out = scanner.feed(data).decode("utf-8")  # strict
    assert "\\ud83d" not in out and "\ufffd" in out
    assert scanner.source == data, "the log keeps the escape, so it can join the pair"


def test_an_event_that_never_ends_is_bounded() -> None:
    scanner = OpenAIPassThrough(wants_usage=True)
    scanner.max_event = 1000
    scanner.feed(b"data: " + b"x" * 900)
    with pytest.raises(UpstreamGarbage):
        scanner.feed(b"x" * 200)


def test_a_final_event_without_its_blank_line_is_flushed_at_eof() -> None:
    scanner = OpenAIPassThrough(wants_usage=True)
    assert scanner.feed(event(chunk("a")) + b"data: [DONE]") == event(chunk("a"))
    assert scanner.close() == b"data: [DONE]\n\n"
    assert scanner.finished


def test_usage_in_json_with_spaces_is_still_found() -> None:
    scanner = OpenAIPassThrough(wants_usage=False)
    spaced = b'data: {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}}\n\n'
    content = b'data: {"choices": [{"index": 0, "delta": {"content": "x"}}], "usage": null}\n\n'
    assert scanner.feed(content + spaced) == content
    assert scanner.usage is not None and scanner.usage.total_tokens == 3

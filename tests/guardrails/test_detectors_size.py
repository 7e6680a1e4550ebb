"""The `size` detector: prompt tokens (estimated: UTF-8 bytes / 4), message count and characters at the
input stage, the answer's tokens and characters at the output stage; whole-part findings; config errors."""

from __future__ import annotations

import pytest

from runtime.config.load import ConfigError
from runtime.guardrails.detectors import size
from runtime.guardrails.types import INPUT, OUTPUT, Subject


def request(*contents: str) -> Subject:
    body = {"messages": [{"role": "user", "content": c} for c in contents]}
    return Subject(INPUT, list(contents), body=body)


def kinds(detector: size.SizeDetector, subject: Subject) -> list[str]:
    return [f.type for f in detector.scan(subject)]


def test_token_estimate_is_bytes_over_four_rounded_up() -> None:
    assert size.estimate_tokens([]) == 0
    assert size.estimate_tokens(["abcd"]) == 1
    assert size.estimate_tokens(["abcde"]) == 2
    assert size.estimate_tokens(["ab", "cd"]) == 1
    assert size.estimate_tokens(["é" * 4]) == 2  # 8 UTF-8 bytes


def test_prompt_tokens_limit() -> None:
    detector = size.build({"max_prompt_tokens": 10}, "p", [], 1.0)
    assert kinds(detector, request("x" * 40)) == []  # exactly 10 tokens
    assert kinds(detector, request("x" * 40, "y")) == ["size:prompt_tokens"]


def test_messages_limit() -> None:
    detector = size.build({"max_messages": 2}, "p", [], 1.0)
    assert kinds(detector, request("a", "b")) == []
    assert kinds(detector, request("a", "b", "c")) == ["size:messages"]
    responses = Subject(INPUT, ["a"], body={"input": [{"role": "user"}] * 3})
    assert kinds(detector, responses) == ["size:messages"]
    assert kinds(detector, Subject(INPUT, ["a"], body=None)) == []


def test_chars_limit_and_several_findings_on_the_largest_part() -> None:
    detector = size.build({"max_chars": 10, "max_prompt_tokens": 2, "max_messages": 5}, "p", [], 1.0)
    found = detector.scan(request("short", "a much longer message"))
    assert [f.type for f in found] == ["size:prompt_tokens", "size:chars"]
    assert all(f.whole and f.part == 1 for f in found)


def test_output_limits_apply_to_answers_only() -> None:
    detector = size.build({"max_output_chars": 5, "max_output_tokens": 1, "max_chars": 1000}, "p", [], 1.0)
    assert kinds(detector, Subject(OUTPUT, ["abcdef"])) == ["size:output_tokens", "size:output_chars"]
    assert kinds(detector, Subject(OUTPUT, ["abcd"])) == []
    assert kinds(detector, request("abcdef")) == []  # the input limits: 1000 chars


def test_detector_shape() -> None:
    detector = size.build({"max_messages": 1}, "p", [], 4.0)
    assert (detector.kind, detector.remote, detector.streamable, detector.timeout_s) == ("size", False, False, 4.0)
    assert detector.scan(Subject(INPUT, [], body={})) == []


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({}, "c"),
        ({"max_tokens": 5}, "c.max_tokens"),
        ({"max_messages": 0}, "c.max_messages"),
        ({"max_chars": -1}, "c.max_chars"),
        ({"max_prompt_tokens": "100"}, "c.max_prompt_tokens"),
        ({"max_prompt_tokens": 1.5}, "c.max_prompt_tokens"),
        ({"max_output_chars": True}, "c.max_output_chars"),
    ],
)
def test_config_errors(config: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as err:
        size.build(config, "c", [], 1.0)
    assert err.value.path == path

"""The hot-path shortcuts of the offline detectors (issue 16, the full stack's cost): the clean-text memo
(a short text the pii detector found nothing in is not scanned again; a text with a finding always is)
and the card search's early outs (a digit run with no group starting as a card network does)."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.guardrails.detectors import base, pii
from runtime.guardrails.types import Finding, Subject

SYSTEM = "You are a concise assistant."
CARD = "4111 1111 1111 1111"


def detector(**config: Any) -> pii.PiiDetector:
    return pii.build({"entities": ["credit_card", "email"], **config}, "p.config", [], 1.0)


def counted(d: pii.PiiDetector, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts `d` really scans from now on."""
    seen: list[str] = []
    real = d._scan_text

    def spy(text: str, part: int, findings: list[Finding]) -> None:
        seen.append(text)
        real(text, part, findings)

    monkeypatch.setattr(d, "_scan_text", spy)
    return seen


def kinds(findings: list[Finding]) -> list[tuple[str, int, int, int]]:
    return [(f.type, f.part, f.start, f.end) for f in findings]


def test_a_clean_text_is_scanned_once_then_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    d = detector()
    seen = counted(d, monkeypatch)
    prompt = f"pay with {CARD} or mail a@example.com"
    first = d.scan(Subject("input", [SYSTEM, prompt]))
    second = d.scan(Subject("input", [SYSTEM, prompt]))
    # The system prompt (clean) is read once; the prompt with findings every time, with the same result.
    assert seen == [SYSTEM, prompt, prompt]
    assert kinds(first) == kinds(second) == [("credit_card", 1, 9, 28), ("email", 1, 37, 50)]
    assert SYSTEM in (d.clean_texts or {}) and prompt not in (d.clean_texts or {})


def test_the_memo_keeps_no_text_with_a_finding_and_answers_per_part() -> None:
    d = detector()
    d.scan(Subject("input", ["hello", "hello"]))
    # The same clean text in another part, and a text with a card after it: found in its own part.
    found = d.scan(Subject("input", ["hello", f"card {CARD}", "hello"]))
    assert kinds(found) == [("credit_card", 1, 5, 24)]
    assert list(d.clean_texts or {}) == ["hello"]


def test_long_texts_are_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    d = detector()
    seen = counted(d, monkeypatch)
    long = "x" * (base.CLEAN_MEMO_CHARS + 1)
    d.scan(Subject("input", [long]))
    d.scan(Subject("input", [long]))
    assert len(seen) == 2 and not d.clean_texts


def test_the_memo_is_bounded_oldest_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "CLEAN_MEMO_ENTRIES", 3)
    d = detector()
    for i in range(5):
        d.scan(Subject("input", [f"text {i}"]))
    assert list(d.clean_texts or {}) == ["text 2", "text 3", "text 4"]


def test_each_detector_has_its_own_memo() -> None:
    # A config edit builds new detectors: what one found clean says nothing about another's entities.
    cards_only, phones = detector(), pii.build({"entities": ["phone"]}, "p.config", [], 1.0)
    text = "call (415) 555-2671 today"
    assert cards_only.scan(Subject("input", [text])) == []
    assert [f.type for f in phones.scan(Subject("input", [text]))] == ["phone"]


def test_detectors_without_the_memo_scan_every_time() -> None:
    assert base.OfflineDetector.clean_texts is None


@pytest.mark.parametrize(
    ("text", "cards"),
    [
        ("order 9000000000001234 shipped", []),  # no network starts with 9
        ("ref 1234567890123456 and 7777 8888 9999 0000", []),
        ("order 9234 4111 1111 1111 1111", ["4111 1111 1111 1111"]),  # the card after a 9-group
        ("x 4111111111111111 y", ["4111111111111111"]),  # one group, no separator
        ("x 4111-1111-1111-1111 y", ["4111-1111-1111-1111"]),
        # Arabic-Indic digits: read through the normalised copy, still a card
        ("x \u0664\u0661\u0661\u0661" + "\u0661" * 12 + " y", ["\u0664\u0661\u0661\u0661" + "\u0661" * 12]),
    ],
)
def test_card_search_early_outs_keep_the_findings(text: str, cards: list[str]) -> None:
    found = detector(entities=["credit_card"]).scan(Subject("input", [text]))
    assert [text[f.start : f.end] for f in found] == cards

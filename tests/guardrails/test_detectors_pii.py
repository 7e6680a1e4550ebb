"""The `pii` detector: each entity found when valid (checksums, library validation) and not when it only
looks like one; spans exact; config errors with their paths."""

from __future__ import annotations

import pytest

from runtime.config.load import ConfigError
from runtime.guardrails.detectors import pii
from runtime.guardrails.types import Finding, Subject


def scan(text: str, **config: object) -> list[tuple[str, str]]:
    """(type, the span's text) for each finding: the span check is the test's own, detectors never see it."""
    detector = pii.build(config, "p.config", [], 1.0)
    return [(f.type, text[f.start : f.end]) for f in detector.scan(Subject("input", [text]))]


# --- cards -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "card",
    [
        "4111 1111 1111 1111",  # Visa test number, spaced
        "4111-1111-1111-1111",
        "4012888888881881",
        "5555555555554444",  # Mastercard
        "2223003122003222",  # Mastercard 2-series
        "378282246310005",  # Amex (15)
        "3782 822463 10005",  # Amex as printed
        "6011111111111117",  # Discover
    ],
)
def test_valid_card_found_with_exact_span(card: str) -> None:
    text = f"my card is {card}, thanks"
    assert scan(text, entities=["credit_card"]) == [("credit_card", card)]


@pytest.mark.parametrize(
    "text",
    [
        "order id 1234567812345678 shipped",  # 16 digits failing Luhn
        "order 4111 1111 1111 1112",  # a Visa-looking number with a bad checksum
        "ref 1111111111111117",  # Luhn-valid but no card network starts with 1
        "4111111111111",  # 13 digits failing Luhn
        "tracking 4111111111111111111111",  # too long to be a card, no group to split at
    ],
)
def test_card_lookalikes_ignored(text: str) -> None:
    assert scan(text, entities=["credit_card"]) == []


def test_card_after_another_number_in_one_run() -> None:
    text = "order 1234 4111 1111 1111 1111 paid"
    assert scan(text, entities=["credit_card"]) == [("credit_card", "4111 1111 1111 1111")]


def test_two_cards_and_parts() -> None:
    detector = pii.build({"entities": ["credit_card"]}, "p", [], 1.0)
    texts = ["none here", "a 5555555555554444 b 378282246310005"]
    found = detector.scan(Subject("output", texts))
    assert [(f.part, f.type, texts[f.part][f.start : f.end]) for f in found] == [
        (1, "credit_card", "5555555555554444"),
        (1, "credit_card", "378282246310005"),
    ]
    assert all(isinstance(f, Finding) and not f.whole for f in found)


# --- e-mail ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email", ["john.doe@example.com", "a+tag@mail.example.co.uk", "x_y-z@sub-domain.io", "ADMIN@EXAMPLE.ORG"]
)
def test_email_found(email: str) -> None:
    text = f"write to <{email}>."
    assert scan(text, entities=["email"]) == [("email", email)]


@pytest.mark.parametrize(
    "text", ["ping me @john", "user@localhost", "a@b", "decorators like @property", "x@y.1", "email at example.com"]
)
def test_email_lookalikes_ignored(text: str) -> None:
    assert scan(text, entities=["email"]) == []


def test_several_emails() -> None:
    text = "cc a@x.io, b@y.org and c@z.net"
    assert [s for _, s in scan(text, entities=["email"])] == ["a@x.io", "b@y.org", "c@z.net"]


# --- IBAN ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "iban",
    [
        "GB82 WEST 1234 5698 7654 32",
        "GB82WEST12345698765432",
        "DE89 3704 0044 0532 0130 00",
        "FR1420041010050500013M02606",
    ],
)
def test_valid_iban(iban: str) -> None:
    assert scan(f"pay to {iban} today", entities=["iban"]) == [("iban", iban)]


@pytest.mark.parametrize(
    "text", ["pay to GB82 WEST 1234 5698 7654 33", "DE00 3704 0044 0532 0130 00", "AB12 CDEF 1234"]
)
def test_invalid_iban(text: str) -> None:
    assert scan(text, entities=["iban"]) == []


# --- phones ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "+1 415 555 2671",
        "(415) 555-2671",
        "415-555-2671",
        "+44 20 7946 0958",
        "020 7946 0958",
        "02079460958",
        "+33 1 42 68 53 00",
        "01 42 68 53 00",
        "+91 98765 43210",
        "98765 43210",
        "+14155552671",
    ],
)
def test_valid_phone(phone: str) -> None:
    assert scan(f"call {phone} now", entities=["phone"]) == [("phone", phone)]


@pytest.mark.parametrize(
    "text",
    [
        "random 1234567",
        "code 0000000000",
        "on 2023-11-29 at",
        "dated 10/12/2024",
        "v 1.2.3.4",
        "order 123456789",  # unformatted digits without a trunk 0 or +CC
        "ts 1700000000",
        "zip 94105-1234",  # grouped unlike any phone format
    ],
)
def test_phone_lookalikes_ignored(text: str) -> None:
    assert scan(text, entities=["phone"]) == []


def test_phone_regions_decide_national_numbers() -> None:
    text = "call 020 7946 0958"  # a London number, written nationally
    assert scan(text, entities=["phone"], phone_regions=["GB"]) == [("phone", "020 7946 0958")]
    assert scan(text, entities=["phone"], phone_regions=["US"]) == []


# --- IP addresses ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ip", ["192.168.1.20", "8.8.8.8", "::1", "2001:db8::8a2e:370:7334", "fe80::1ff:fe23:4567:890a", "::ffff:192.0.2.1"]
)
def test_ip_found(ip: str) -> None:
    assert scan(f"host {ip} is up", entities=["ip_address"]) == [("ip_address", ip)]


@pytest.mark.parametrize(
    "text", ["version 1.2.3.4.5", "bad 256.1.1.1", "time 12:30:45", "ratio 1:2:3", "Note: see", "v1.2.3", "a::b::c"]
)
def test_ip_lookalikes_ignored(text: str) -> None:
    assert scan(text, entities=["ip_address"]) == []


# --- national ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entity", "valid", "invalid"),
    [
        ("us_ssn", "536-90-4399", "078-05-1120"),  # the Woolworth wallet SSN is blacklisted
        ("us_ssn", "536-90-4399", "000-12-3456"),
        ("fr_insee", "2 95 10 99 126 111 93", "2 95 10 99 126 111 94"),
        ("it_codice_fiscale", "RCCMNL83S18D969H", "RCCMNL83S18D969A"),
        ("es_dni", "54362315-K", "54362315-A"),
        ("es_nie", "X2482300W", "X2482300A"),
        ("br_cpf", "390.533.447-05", "390.533.447-06"),
        ("de_tax_id", "36 574 261 809", "36 574 261 808"),
        ("uk_nhs", "943 476 5919", "943 476 5918"),
        ("nl_bsn", "111222333", "111222334"),
        ("in_aadhaar", "2341 2341 2346", "2341 2341 2345"),
        ("ca_sin", "123 456 782", "123 456 783"),
        ("pl_pesel", "44051401359", "44051401358"),
    ],
)
def test_national_ids(entity: str, valid: str, invalid: str) -> None:
    assert scan(f"id {valid}.", entities=[entity]) == [(entity, valid)]
    assert scan(f"id {invalid}.", entities=[entity]) == []


def test_national_id_group() -> None:
    detector = pii.build({"entities": ["national_id"]}, "p", [], 1.0)
    assert set(detector.entities) == set(pii.NATIONAL_IDS)
    text = "ssn 536-90-4399 and cf RCCMNL83S18D969H"
    assert [f.type for f in detector.scan(Subject("input", [text]))] == ["us_ssn", "it_codice_fiscale"]


# --- everything together ---------------------------------------------------------------------------------


def test_default_is_every_entity_and_spans_do_not_overlap() -> None:
    text = (
        "Hi, I'm Jane (jane@corp.example). Card 4111 1111 1111 1111, phone +1 415 555 2671, "
        "IBAN DE89 3704 0044 0532 0130 00, server 10.0.0.7, SSN 536-90-4399. In 2023 we sold 45 units of v1.2.3."
    )
    found = scan(text)
    assert found == [
        ("email", "jane@corp.example"),
        ("credit_card", "4111 1111 1111 1111"),
        ("phone", "+1 415 555 2671"),
        ("iban", "DE89 3704 0044 0532 0130 00"),
        ("ip_address", "10.0.0.7"),
        ("us_ssn", "536-90-4399"),
    ]
    assert pii.build({}, "p", [], 1.0).entities == pii.ENTITIES


def test_plain_prose_finds_nothing() -> None:
    text = "In 2023 the team shipped 3 releases (v1.2.3, v1.4.0 and 2.0). Meeting at 10:30 on 2024-01-15, room 42."
    assert scan(text) == []


def test_detector_shape() -> None:
    detector = pii.build({}, "p", [], 2.5)
    assert (detector.kind, detector.remote, detector.streamable, detector.timeout_s) == ("pii", False, True, 2.5)
    assert detector.scan(Subject("input", ["", "nothing"])) == []


# --- config errors ---------------------------------------------------------------------------------------


def test_unknown_entity_names_its_path_and_a_suggestion() -> None:
    with pytest.raises(ConfigError) as err:
        pii.build({"entities": ["email", "credit_crad"]}, "guardrails_config.guardrail_providers[0].config", [], 1.0)
    assert err.value.path == "guardrails_config.guardrail_providers[0].config.entities[1]"
    assert "credit_card" in err.value.message


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"entites": ["email"]}, "c.entites"),
        ({"entities": "email"}, "c.entities"),
        ({"entities": [3]}, "c.entities[0]"),
        ({"entities": []}, "c.entities"),
        ({"phone_regions": ["US", "XX"]}, "c.phone_regions[1]"),
        ({"phone_regions": []}, "c.phone_regions"),
    ],
)
def test_config_errors(config: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as err:
        pii.build(config, "c", [], 1.0)
    assert err.value.path == path


# --- non-ASCII text and pathological input -----------------------------------------------------------------


def test_spans_are_character_offsets_in_non_ascii_text() -> None:
    text = "Привет 👋 — ma carte: 4111 1111 1111 1111, écrivez à jose@example.fr; ip ::1"
    assert scan(text, entities=["credit_card", "email", "ip_address"]) == [
        ("credit_card", "4111 1111 1111 1111"),
        ("email", "jose@example.fr"),
        ("ip_address", "::1"),
    ]


@pytest.mark.parametrize("unit", ["4 ", "1:", "::", "a@", "@", "1.2.3.4.", "x1 ", "+1 (", "a.b@"])
def test_pathological_input_is_scanned_without_false_findings(unit: str) -> None:
    # Each pass is linear in the text (these took seconds to minutes before: nested windows, backtracking).
    assert scan(unit * 5000) == []


def test_many_findings_in_one_text() -> None:
    text = "123-45-6789 " * 2000  # valid-looking SSNs (not on stdnum's blacklist): thousands of findings
    found = pii.build({"entities": ["us_ssn"]}, "p", [], 1.0).scan(Subject("input", [text]))
    assert len(found) == 2000 and [f.start for f in found] == sorted(f.start for f in found)


def test_numbers_inside_words_and_addresses_are_not_entities() -> None:
    assert scan("id 4111111111111111abcdefgh here") == []  # a card's digits glued to a longer word
    assert scan("mail 4155552671.smith@example.com now") == [("email", "4155552671.smith@example.com")]


def test_technical_text_finds_only_the_address() -> None:
    text = (
        "id 550e8400-e29b-41d4-a716-446655440000 at ts 1700000000 and 1717171717171, commit 9f29398a1b2c3d4e5f607182,"
        " color #ff0033, localhost:8080, http://127.0.0.1:8000/v1/chat, price $1,234,567.89, ISBN 978-3-16-148410-0,"
        " order #123456789, int64 max 9223372036854775807, pi 3.14159265358979, matrix 1024x768, zip 94105-1234,"
        " 0x7fffffff, range(0, 1000000), 12/31/2024 23:59:59"
    )
    assert scan(text) == [("ip_address", "127.0.0.1")]

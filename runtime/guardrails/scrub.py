"""Matched values out of what the request log stores: the request body, its raw bytes, the answer.

A redacted value is already masked in the body and the answer, but the raw request bytes still hold it;
a flagged (or fail-open) one went through unmasked. When the request is over, each value is replaced by
a mask in `ctx.body`'s texts, in `ctx.input_raw` (as its JSON-escaped bytes; when a value cannot be
found verbatim there, the raw bytes become the re-encoded masked body) and in `ctx.output`.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.guardrails.text import input_slots, output_slots

MASK = "[REDACTED]"


def _replace_text(text: str, values: list[str]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def _encodings(value: str) -> list[bytes]:
    """The ways a value can appear in a JSON body: as UTF-8, and as JSON-escaped (either ASCII mode)."""
    forms = {value.encode("utf-8", "surrogatepass")}
    forms.add(json.dumps(value)[1:-1].encode())
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1].encode("utf-8", "surrogatepass"))
    return sorted(forms, key=len, reverse=True)


def _replace_bytes(data: bytes, values: list[str]) -> tuple[bytes, bool]:
    """(data with every value masked, whether every value was found)."""
    found_all = True
    for value in values:
        found = False
        for form in _encodings(value):
            if form in data:
                data = data.replace(form, MASK.encode())
                found = True
        found_all = found_all and found
    return data, found_all


def scrub(ctx: Any, values: list[str]) -> None:
    values = sorted({v for v in values if v}, key=len, reverse=True)
    if not values:
        return
    body = ctx.body
    if isinstance(body, dict):
        for slot in input_slots(body):
            text = slot.get()
            if text:
                slot.set(_replace_text(text, values))
    raw = ctx.input_raw
    if isinstance(raw, (bytes, bytearray)) and raw:
        cleaned, found_all = _replace_bytes(bytes(raw), values)
        if not found_all and isinstance(body, dict):
            from runtime.core.gateway import encode_json

            cleaned = encode_json(body)
        ctx.input_raw = cleaned
    output = ctx.output
    if isinstance(output, (bytes, bytearray)):
        ctx.output, _ = _replace_bytes(bytes(output), values)
    elif isinstance(output, str):
        ctx.output = _replace_text(output, values)
    elif isinstance(output, dict):
        for slot in output_slots(output):
            slot.set(_replace_text(slot.get(), values))

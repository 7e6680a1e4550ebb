"""Limits on a parsed request body that the JSON parser (ujson) does not enforce itself.

- Nesting depth: ujson accepts up to 1,024 levels, but translators and Python's `repr` recurse, so a
  1,000-deep body crashed with RecursionError (a plain-text 500). Real requests, JSON Schemas in tools
  included, stay far below MAX_DEPTH.
- `NaN` and `Infinity`: ujson reads them as floats, but they are not JSON; forwarded, they would make
  the upstream body invalid. (Overflowing literals such as `1e400` also read as infinity; the typed
  field accessors in runtime/codecs/fields.py refuse non-finite values in the numeric fields that
  translators read, which is where they would do harm.)

`check_body(raw, body)` runs after a successful parse. Ordinary bodies pay two `bytes.count` and two
`bytes.find` calls (C loops, no allocation); only a body with more than MAX_DEPTH brackets is walked,
and only a body that contains the text `NaN` or `Infinity` is scanned with its strings taken out.
"""

from __future__ import annotations

import re
from typing import Any

from runtime.errors import InvalidRequest

MAX_DEPTH = 128

# An escape (\" or \\ and the like), then whole strings: removed so that text inside strings (a prompt
# that says "NaN") does not count.
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')


def _too_deep(body: Any, limit: int) -> bool:
    """Whether containers nest more than `limit` levels (an explicit stack: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _has_constant(raw: bytes) -> bool:
    """Whether NaN or Infinity occurs outside strings."""
    structure = _STRING.sub(b'""', _ESCAPE.sub(b"", raw))
    return b"NaN" in structure or b"Infinity" in structure


def check_body(raw: bytes, body: Any, max_depth: int = MAX_DEPTH) -> None:
    """Raise InvalidRequest (400) when the parsed body nests deeper than `max_depth` levels or `raw`
    holds NaN or Infinity. `body` is `raw` parsed."""
    if isinstance(body, (dict, list)) and raw.count(b"[") + raw.count(b"{") > max_depth and _too_deep(body, max_depth):
        raise InvalidRequest(f"request body is nested more than {max_depth} levels deep", code="json_too_deep")
    if (b"NaN" in raw or b"Infinity" in raw) and _has_constant(raw):
        raise InvalidRequest("request body is not valid JSON: NaN and Infinity are not JSON numbers")

"""Text that UTF-8 (and so SQLite and every client) can hold, and content cut to a size bound.

JSON may carry lone UTF-16 surrogates (`"\\ud800"`), and an upstream stream may split one emoji's
surrogate pair across two events; Python keeps such code points in a `str`, but `str.encode()`,
SQLite and strict JSON readers refuse them. `repair` turns them into storable text: a high+low pair
that arrived as two code points is joined into the real character, a lone surrogate becomes U+FFFD.
Normal text pays one `isascii()` (O(1) in CPython) or one successful encode; only text that fails
to encode pays for the repair.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


def _repair_slow(text: str) -> str:
    # UTF-16 with surrogatepass writes each surrogate as its code unit; decoding pairs them up again
    # (joining a split pair) and replaces what is still unpaired.
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def repair(text: str) -> str:
    """`text` itself when it encodes to UTF-8; else a copy with surrogates joined or replaced."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return _repair_slow(text)
    return text


def utf8(text: str) -> bytes:
    """`text` as UTF-8 bytes, repairing surrogates if (and only if) plain encoding fails."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _repair_slow(text).encode()


def human_size(n: int) -> str:
    """Bytes for a person: 812 B, 9.7 KB, 9.7 MB, 1.2 GB (powers of 1024)."""
    size = float(n)
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def truncation_marker(cut_bytes: int, setting: str) -> str:
    return f"…[truncated {human_size(cut_bytes)} by {setting}]"


def _cut_point(view: memoryview, limit: int) -> int:
    """The largest index <= limit that does not split a UTF-8 sequence (limit < len(view))."""
    end = limit
    # Continuation bytes are 0b10xxxxxx: step back (at most 3) to the lead byte of the cut sequence.
    while end > limit - 3 and end > 0 and (view[end] & 0xC0) == 0x80:
        end -= 1
    return end if (view[end] & 0xC0) != 0x80 else limit  # not UTF-8 here anyway: cut where asked


def clip_utf8(data: bytes | bytearray | memoryview, limit: int, setting: str) -> str:
    """At most `limit` bytes of UTF-8 `data` as text, plus a marker saying how much was cut.

    O(limit), not O(len(data)): only the kept prefix is decoded, and the cut never splits a character
    (invalid bytes elsewhere become U+FFFD, as they did before)."""
    view = memoryview(data)
    if len(view) <= limit:
        return bytes(view).decode("utf-8", "replace")
    end = _cut_point(view, limit)
    return bytes(view[:end]).decode("utf-8", "replace") + truncation_marker(len(view) - end, setting)


def clip_text(text: str, limit: int, setting: str) -> str:
    """`text` repaired and bounded to `limit` UTF-8 bytes (plus a marker), in O(limit) time.

    Only the first `limit` characters are encoded (a character is at least one byte, so they hold the
    kept part); the size of the characters beyond them is estimated from that prefix's bytes per
    character (exact for ASCII and for uniform text), so nothing that is thrown away is encoded."""
    if len(text) * 4 <= limit:  # at most 4 bytes a character: it fits, no need to measure
        return repair(text)
    head = utf8(text[:limit])
    rest = len(text) - limit if len(text) > limit else 0
    if not rest and len(head) <= limit:
        return repair(text)
    view = memoryview(head)
    end = _cut_point(view, limit) if len(view) > limit else len(view)
    return bytes(view[:end]).decode() + truncation_marker(len(view) - end + rest * len(view) // limit, setting)

"""AWS event-stream framing (`application/vnd.amazon.eventstream`), as Bedrock's ConverseStream sends it.

    ┌ prelude ──────────────────────────────────────┐
    total length (u32) │ headers length (u32) │ prelude CRC32 (u32) │ headers │ payload │ message CRC32 (u32)

Big-endian throughout. The prelude CRC covers the first 8 bytes; the message CRC covers everything
before it. A header is: name length (u8), name, value type (u8), value; strings (type 7) and byte arrays
(type 6) carry a u16 length. Any CRC mismatch means the stream is corrupt: we raise rather than guess.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from runtime.errors import UpstreamGarbage

_PRELUDE = struct.Struct(">III")
_MIN_FRAME = 16  # prelude + message CRC
_MAX_FRAME = 16 * 1024 * 1024
# value type -> fixed size (None: u16-length-prefixed)
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}


class Message:
    __slots__ = ("headers", "payload")

    def __init__(self, headers: dict[str, Any], payload: bytes) -> None:
        self.headers = headers
        self.payload = payload

    def __repr__(self) -> str:
        return f"Message({self.headers!r}, {self.payload[:60]!r})"


def _headers(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pos = 0
    while pos < len(data):
        size = data[pos]
        name = data[pos + 1 : pos + 1 + size].decode("utf-8")
        pos += 1 + size
        kind = data[pos]
        pos += 1
        if kind in (6, 7):
            (length,) = struct.unpack_from(">H", data, pos)
            raw = data[pos + 2 : pos + 2 + length]
            pos += 2 + length
            out[name] = raw.decode("utf-8") if kind == 7 else raw
        elif kind in _FIXED:
            width = _FIXED[kind]
            raw = data[pos : pos + width]
            pos += width
            if kind in (0, 1):
                out[name] = kind == 0
            elif kind == 9:
                out[name] = raw
            else:
                out[name] = int.from_bytes(raw, "big", signed=True)
        else:
            raise UpstreamGarbage(f"event-stream header {name!r} has unknown value type {kind}")
    return out


class EventStreamDecoder:
    """Feed bytes as they arrive; get back the complete messages."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    @property
    def pending(self) -> bool:
        return bool(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        buf = self._buf + data if self._buf else data
        messages: list[Message] = []
        pos = 0
        while len(buf) - pos >= _MIN_FRAME:
            total, header_len, prelude_crc = _PRELUDE.unpack_from(buf, pos)
            if zlib.crc32(buf[pos : pos + 8]) != prelude_crc:
                raise UpstreamGarbage("event-stream prelude CRC mismatch: the stream is corrupt")
            if total < _MIN_FRAME or total > _MAX_FRAME or header_len > total - _MIN_FRAME:
                raise UpstreamGarbage(f"event-stream frame of impossible size {total}")
            if len(buf) - pos < total:
                break
            frame = buf[pos : pos + total]
            (message_crc,) = struct.unpack_from(">I", frame, total - 4)
            if zlib.crc32(frame[:-4]) != message_crc:
                raise UpstreamGarbage("event-stream message CRC mismatch: the stream is corrupt")
            headers = _headers(frame[12 : 12 + header_len])
            messages.append(Message(headers, frame[12 + header_len : total - 4]))
            pos += total
        self._buf = buf[pos:]
        return messages


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One frame with string headers (what an ingress or a test needs to produce)."""
    head = b"".join(
        bytes([len(k.encode())]) + k.encode() + b"\x07" + struct.pack(">H", len(v.encode())) + v.encode()
        for k, v in headers.items()
    )
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + head + payload
    return body + struct.pack(">I", zlib.crc32(body))

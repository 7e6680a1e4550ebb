"""Read server-sent events from a raw aiohttp response (for what the SDK hides)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class SSEEvent:
    data: str
    event: str | None = None

    @property
    def is_done(self) -> bool:
        return self.data.strip() == "[DONE]"

    def json(self) -> Any:
        return json.loads(self.data)

    @property
    def is_error(self) -> bool:
        if self.event == "error":
            return True
        try:
            value = self.json()
        except ValueError:
            return False
        return isinstance(value, dict) and "error" in value


def parse_sse(text: str) -> list[SSEEvent]:
    events: list[SSEEvent] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data_lines: list[str] = []
        event: str | None = None
        for line in block.split("\n"):
            if line.startswith("data:"):
                data_lines.append(line[5:].removeprefix(" "))
            elif line.startswith("event:"):
                event = line[6:].strip()
        if data_lines:
            events.append(SSEEvent("\n".join(data_lines), event))
    return events


async def read_sse(response: aiohttp.ClientResponse) -> tuple[list[SSEEvent], BaseException | None]:
    """All events until the body ends; also returns the error if the body was cut."""
    chunks: list[bytes] = []
    error: BaseException | None = None
    try:
        async for chunk in response.content.iter_any():
            chunks.append(chunk)
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
        error = exc
    return parse_sse(b"".join(chunks).decode(errors="replace")), error

"""Issue 9 item 6 (stream write deadline): a client that opens a stream and never reads must not keep its
provider lane slot forever. After `client.stream_write_timeout_in_seconds` of not reading, the stream is
ended: lane slot released, upstream closed, and the log row says the client stopped reading (408), which
is distinct from 499 (client gone).

Before the fix the stream's write waited for the client forever, so with lane concurrency 1 every later
request to the provider queued behind it until its own timeout.
"""

from __future__ import annotations

import json
import socket
import time

import aiohttp
from fakes import FakeOpenAI, Reply
from harness import StartGateway, make_config, openai_provider

WRITE_TIMEOUT_S = 2.0
# Far more than every socket buffer between the gateway and a client that does not read can hold.
BIG_ANSWER = " ".join(["x" * 2000] * 12_000)  # ~24 MB of content, ~12,000 SSE events


def _stalled_stream(port: int) -> socket.socket:
    """Send a streaming request and never read the answer (a small receive buffer fills at once)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    body = json.dumps(
        {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "a lot"}], "stream": True}
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body)
    return sock


async def test_a_client_that_stops_reading_releases_its_lane_slot(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    config = make_config(
        {"openai": openai_provider(fake_openai.url, concurrency=1, buffer_size=10)},
        stream_write_timeout_in_seconds=WRITE_TIMEOUT_S,
    )
    gateway = start_gateway(config)
    fake_openai.enqueue(Reply(content=BIG_ANSWER))
    sock = _stalled_stream(gateway.port)
    try:
        deadline = time.monotonic() + 10
        while not fake_openai.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fake_openai.requests, "the stalled stream did not reach the provider"
        started = time.monotonic()
        # Lane concurrency 1: this request can only run once the stalled stream gave its slot back.
        body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "me next"}]}
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=40)) as session,
            session.post(gateway.url("/v1/chat/completions"), json=body) as response,
        ):
            answer = await response.json()
        waited = time.monotonic() - started
    finally:
        sock.close()
    assert response.status == 200, answer
    assert waited < 30, f"the second request waited {waited:.1f}s for the lane slot"
    rows = gateway.log.wait_rows(2)
    stalled = [r for r in rows if r["stream"]]
    assert len(stalled) == 1, rows
    row = stalled[0]
    assert row["status"] == 408, row
    assert row["error_type"] == "client_stopped_reading", row
    assert "stopped reading" in row["error"]
    assert fake_openai.counts.get("streams_completed", 0) == 0, "the upstream stream was closed, not finished"

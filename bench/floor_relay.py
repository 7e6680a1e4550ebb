"""The framework floor: the least a Python relay on uvloop can cost per request, measured like a gateway.

Two servers, each forwarding ``POST /v1/chat/completions`` to the mock through Bifrost's own upstream
client (runtime/net/client.py) and returning the mock's bytes, with nothing else: no validation, no
routing, no keys, no hooks, no log.

- ``aiohttp``: an aiohttp ``web.Application`` with that one route, the way Bifrost's server is built
  (AppRunner, no access log). What it costs over direct-to-mock is the floor of any gateway built on
  aiohttp's HTTP server; Bifrost's own pipeline is what it adds above this.
- ``raw``: a bare ``asyncio.Protocol`` that reads a keep-alive request with a Content-Length body and
  writes the answer in one call. It understands only what the load generator sends and is not a
  server anyone should run: it shows what the same relay costs without an HTTP framework at all.

The targets ``floor-aiohttp`` and ``floor-raw`` (bench/targets/floor.py) run this module pinned like
a gateway, so ``overhead`` and ``frontier`` place Bifrost between the two floors in the same run.

    python -m bench.floor_relay --server aiohttp|raw --port 8090 --upstream http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import ujson
import uvloop
from aiohttp import web

from runtime.net.client import HTTPClient

CHAT_PATH = "/v1/chat/completions"
_UPSTREAM_HEADERS = {"Authorization": "Bearer sk-bench-fake", "Content-Type": "application/json"}
_MAX_HEAD = 65536  # bytes: the raw server's bound on a request head


async def relay(client: HTTPClient, upstream: str, raw: bytes) -> bytes:
    """What a gateway cannot skip: parse the client's JSON, send a body upstream, read the answer whole
    and parse it (a gateway reads the usage out of it)."""
    body = ujson.loads(raw)
    response = await client.request(
        "POST", upstream + CHAT_PATH, _UPSTREAM_HEADERS, ujson.dumps(body).encode(), connect_timeout=5, read_timeout=30
    )
    data = await response.read()
    ujson.loads(data)
    return data


def aiohttp_app(client: HTTPClient, upstream: str) -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        data = await relay(client, upstream, await request.read())
        return web.Response(body=data, content_type="application/json")

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post(CHAT_PATH, chat)
    app.router.add_get("/", ready)
    return app


class RawRelay(asyncio.Protocol):
    """One keep-alive connection of the raw floor: requests are answered in order, one at a time."""

    def __init__(self, client: HTTPClient, upstream: str) -> None:
        self._client = client
        self._upstream = upstream
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._next()

    def _next(self) -> None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_HEAD and self._transport is not None:
                self._transport.close()
            return
        head = self._buffer[:end].lower() + b"\r\n"
        at = head.find(b"content-length:")
        length = int(head[at + 15 : head.find(b"\r\n", at)]) if at >= 0 else 0
        if len(self._buffer) < end + 4 + length:
            return
        first_line = head[: head.find(b"\r\n")]
        body = self._buffer[end + 4 : end + 4 + length]
        self._buffer = self._buffer[end + 4 + length :]
        self._busy = True
        asyncio.get_running_loop().create_task(self._answer(first_line, body))

    async def _answer(self, first_line: bytes, body: bytes) -> None:
        if first_line.startswith(b"get "):
            status, data = b"200 OK", b"ok"
        else:
            try:
                status, data = b"200 OK", await relay(self._client, self._upstream, body)
            except Exception as exc:  # the load generator counts the 502
                status, data = b"502 Bad Gateway", str(exc).encode()
        if self._transport is not None:
            self._transport.write(
                b"HTTP/1.1 %b\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
                % (status, len(data), data)
            )
        self._busy = False
        if self._buffer:
            self._next()


async def serve(server: str, port: int, upstream: str) -> None:
    client = HTTPClient()
    if server == "aiohttp":
        runner = web.AppRunner(aiohttp_app(client, upstream), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    else:
        loop = asyncio.get_running_loop()
        await loop.create_server(lambda: RawRelay(client, upstream), "127.0.0.1", port)
    print(f"floor ({server}) on 127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor_relay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("aiohttp", "raw"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the mock's origin, e.g. http://127.0.0.1:9000")
    args = parser.parse_args(argv)
    uvloop.run(serve(args.server, args.port, args.upstream.rstrip("/")))


if __name__ == "__main__":
    main()

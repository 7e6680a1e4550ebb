"""An in-process Gateway over the fake OpenAI, for the detectors that call through the gateway (moderation,
judge): the real router, engine and upstream client; a small real plugin records what each finished
request was (its on_finish sees the context the request log would)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from harness import make_config, openai_provider

from runtime.config.load import parse_document
from runtime.config.model import GatewayConfig, Tuning
from runtime.core.context import RequestContext
from runtime.core.gateway import Gateway
from runtime.core.hooks import Hooks
from runtime.net import make_client
from runtime.requestlog.record import INPUT_COL, to_row


class Finished:
    name = "finished"

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def on_finish(self, ctx: RequestContext) -> None:
        self.rows.append(
            {
                "endpoint": ctx.endpoint,
                "ingress": ctx.ingress,
                "status": ctx.status,
                "error": ctx.error,
                "input_raw": ctx.input_raw,
                # What the request log would store as the row's input (the real row builder's column).
                "logged": json.dumps(to_row(ctx, True)[INPUT_COL], default=str),
            }
        )


@asynccontextmanager
async def gateway_over(openai_url: str, **network: Any) -> AsyncIterator[tuple[Gateway, Finished]]:
    raw = make_config({"openai": openai_provider(openai_url, **network)})
    providers, client, _ = parse_document(raw, {}, Tuning())
    config = GatewayConfig(providers=providers, client=client, raw=raw)
    finished = Finished()
    gateway = Gateway(config, Hooks([finished]))
    gateway.engine.client = make_client(16, 16, 5.0)
    try:
        yield gateway, finished
    finally:
        await gateway.engine.client.close()

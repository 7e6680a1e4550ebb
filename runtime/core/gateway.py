"""The Gateway: the per-app state every ingress handler works through.

It owns the router (swapped atomically when providers change), the engine, the frozen plugin hooks
(run by the relay, runtime/http/relay.py) and request ids. The relay translates each ingress's wire format
to the internal one, then calls `targets`, `complete` / `open_stream` and `finish`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import ujson

from runtime.config.model import GatewayConfig
from runtime.core import resume
from runtime.core.context import RequestContext
from runtime.core.failover import RunRules
from runtime.core.health import Notify
from runtime.core.hooks import Hooks
from runtime.core.pipeline import ChunkStream, Engine
from runtime.core.rawstream import RawStream
from runtime.core.router import ProviderHandle, Router
from runtime.core.text import utf8
from runtime.errors import InvalidRequest
from runtime.providers.base import ParsedResponse


def encode_json(obj: Any) -> bytes:
    """The hot-path JSON encoder: compact, UTF-8, no escaped slashes.

    JSON text may carry lone UTF-16 surrogates (a client's `"\\ud800"`, an emoji split across two upstream
    SSE events) that UTF-8 cannot hold: only when encoding fails are they repaired (pair joined, else
    U+FFFD), so normal text costs nothing extra and no chunk ever crashes a stream."""
    text = ujson.dumps(obj, ensure_ascii=False, escape_forward_slashes=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return utf8(text)


class Gateway:
    def __init__(self, config: GatewayConfig, hooks: Hooks) -> None:
        self.config = config
        self.router = Router.build(config.providers, config.client, groups=config.model_groups)
        self.engine = Engine(self.router, None, encode_json)
        self.hooks = hooks
        self._rules = RunRules.build(config, self.router)
        # Where breaker transitions go (runtime/core/health_sync.py), set on every provider's health.
        self._health_notify: Notify | None = None
        self.body_limit = int(config.client.max_request_body_size_mb * 1024 * 1024)
        self.log_content_limit = config.client.max_log_content_kb * 1024  # streamed answers kept for the log
        # Called after a request is over (its log row submitted) and before its answer is handed to the HTTP
        # server to send: the log store's spool writes the row to disk here, so a process killed right after
        # answering has the row on disk (runtime/stores/spool.py). None (the embedded store): nothing to do.
        self.before_reply: Callable[[], None] | None = None
        # Request ids: unique across workers and restarts, cheap to make (no uuid per request).
        self._id_prefix = os.urandom(6).hex()
        self._ids = itertools.count(1)

    def new_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids):x}"

    def set_router(self, router: Router) -> None:
        """Swap the routing table; requests already running keep the handles they resolved."""
        self.router = router
        self.engine.router = router
        self.bind_health(self._health_notify)

    def bind_health(self, notify: Notify | None) -> None:
        """Send every provider's breaker transitions to `notify` (None: keep them local)."""
        self._health_notify = notify
        for handle in self.router.handles.values():
            if handle.health is not None:
                handle.health.notify = notify

    def targets(self, ctx: RequestContext, body: dict[str, Any]) -> list[tuple[ProviderHandle, str]]:
        """Resolve `model` and `fallbacks` (removed from the body: they are ours, not the provider's)."""
        model = body.get("model")
        if model is None or model == "":
            raise InvalidRequest(
                "'model' is required, as provider/model (e.g. openai/gpt-4o-mini)",
                param="model",
                code="missing_required_parameter",
            )
        if not isinstance(model, str):
            raise InvalidRequest(
                f"'model' must be a string, got {type(model).__name__}", param="model", code="invalid_type"
            )
        # What the client asked for: a pre-hook that reroutes (governance choosing a group's or a bare
        # name's provider) leaves the client's own model here, for the log and the answer's `model`.
        ctx.model_requested = ctx.model_requested or model
        router = self.router
        group = router.groups.get(model) if router.groups else None  # a model group (docs/model-groups.md)
        targets = [router.resolve(model)] if group is None else router.group_targets(group)
        fallbacks = body.pop("fallbacks", None)
        if fallbacks is not None:
            if not isinstance(fallbacks, list) or not all(isinstance(f, str) and f for f in fallbacks):
                raise InvalidRequest(
                    "'fallbacks' must be a list of provider/model strings", param="fallbacks", code="invalid_type"
                )
            for fallback in fallbacks:
                targets.extend(router.resolve_fallback(fallback))
            ctx.fallbacks = tuple(fallbacks)
        handle, upstream_model = targets[0]
        ctx.provider = handle.name
        ctx.model = upstream_model
        return targets

    def rules(self) -> RunRules:
        """The attempt loop's view of the config (deadline, context-window fallbacks), rebuilt when the
        config or the router was replaced (two identity checks per request)."""
        rules = self._rules
        if rules.config is not self.config or rules.router is not self.router:
            rules = self._rules = RunRules.build(self.config, self.router)
        return rules

    async def complete(self, ctx: RequestContext, targets: list[tuple[ProviderHandle, str]]) -> ParsedResponse:
        return await self.engine.complete(ctx, targets, self.rules())

    async def open_stream(
        self, ctx: RequestContext, targets: list[tuple[ProviderHandle, str]], passthrough: bool = False
    ) -> ChunkStream | RawStream:
        rules = self.rules()
        stream = await self.engine.open_stream(ctx, targets, passthrough, rules)
        if len(targets) > 1:  # mid-stream recovery needs a target after the serving one
            ctx.resume = resume.plan(ctx, targets, self.engine, rules, self.config)
        return stream

    def finish(self, ctx: RequestContext) -> None:
        ctx.end()  # one clock reading: the log row and /metrics report the same latency and overhead
        if not ctx.status:  # ended by an exception nobody mapped (a bug): a 500, never a row /metrics skips
            ctx.status = 500
            ctx.error = ctx.error or "internal error in the gateway"
            ctx.error_type = ctx.error_type or "internal_error"
        self.hooks.on_finish(ctx)

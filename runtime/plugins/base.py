"""The plugin interface, used by built-in features (request log, metrics, ...) and third parties alike.

A plugin implements any of three hooks; the gateway freezes, at start-up, a tuple of the hooks each
plugin actually has, so a request never calls an empty stage:

- `async pre_hook(ctx) -> ParsedResponse | None` runs in order before routing; returning a response
  short-circuits the request (a cache hit, a budget refusal raising GatewayError).
- `async post_hook(ctx, response) -> None` runs in reverse order, only for plugins whose pre-hook ran
  (or that have no pre-hook), after a successful non-streaming answer.
- `on_finish(ctx) -> None` is synchronous and runs exactly once when the request is over, whatever
  happened (success, error, stream, client gone). It must not block: enqueue, count, return.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from runtime.core.context import RequestContext
from runtime.providers.base import ParsedResponse


@runtime_checkable
class Plugin(Protocol):
    name: str


class Hooks:
    """The frozen hook tuples of an ordered plugin list."""

    __slots__ = ("finish", "plugins", "post", "pre")

    def __init__(self, plugins: list[Any]) -> None:
        self.plugins = tuple(plugins)
        self.pre = tuple(p for p in plugins if hasattr(p, "pre_hook"))
        self.post = tuple(p for p in reversed(plugins) if hasattr(p, "post_hook"))
        self.finish = tuple(p.on_finish for p in plugins if hasattr(p, "on_finish"))

    async def run_pre(self, ctx: RequestContext) -> tuple[ParsedResponse | None, int]:
        """Run pre-hooks in order; returns (short-circuit response or None, how many ran)."""
        for i, plugin in enumerate(self.pre):
            response = await plugin.pre_hook(ctx)
            if response is not None:
                return response, i + 1
        return None, len(self.pre)

    async def run_post(self, ctx: RequestContext, response: ParsedResponse, pre_ran: int) -> None:
        ran = set(map(id, self.pre[:pre_ran]))
        for plugin in self.post:
            if not hasattr(plugin, "pre_hook") or id(plugin) in ran:
                await plugin.post_hook(ctx, response)

    def on_finish(self, ctx: RequestContext) -> None:
        for hook in self.finish:
            hook(ctx)

"""/api/model-groups: the model groups (config.json `model_groups`, docs/model-groups.md).

GET lists every group as configured, with the targets the running router could resolve (`usable`: a
target whose provider has no usable key is left out of the group until it has one). PUT replaces the
whole block through the config store (validated with field paths, written atomically, applied to this
worker at once and to the others by the file watcher), as every other admin edit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from runtime.config.model import ModelGroup
from runtime.core.gateway import Gateway
from runtime.core.groups import GroupPlan
from runtime.http.admin_common import AdminBadRequest, json_response, read_object
from runtime.http.admin_providers import _edit
from runtime.http.keys import GATEWAY
from runtime.stores.config import Raw


def group_view(group: ModelGroup, plan: Any) -> dict[str, Any]:
    usable = {f"{h.name}/{m}" for h, m in plan.orders[0]} if isinstance(plan, GroupPlan) else set()
    return {
        "name": group.name,
        "strategy": group.strategy,
        "targets": [{"model": t.name, "weight": t.weight, "usable": t.name in usable} for t in group.targets],
        "fallbacks": [{"model": t.name, "usable": t.name in usable} for t in group.fallbacks],
        "error": None if isinstance(plan, GroupPlan) or plan is None else getattr(plan, "message", str(plan)),
    }


def groups_view(gw: Gateway) -> list[dict[str, Any]]:
    groups: Mapping[str, ModelGroup] = gw.config.model_groups
    return [group_view(groups[name], gw.router.groups.get(name)) for name in sorted(groups)]


async def list_groups(request: web.Request) -> web.Response:
    return json_response({"model_groups": groups_view(request.app[GATEWAY])})


async def put_groups(request: web.Request) -> web.Response:
    try:
        body = await read_object(request)
        unknown = sorted(set(body) - {"model_groups"})
        if unknown or not isinstance(body.get("model_groups"), dict):
            raise AdminBadRequest(
                'expected {"model_groups": {name: {"targets": [...], "fallbacks": [...], "strategy": ...}}}',
                param=unknown[0] if unknown else "model_groups",
            )
        groups = body["model_groups"]

        def change(raw: Raw) -> None:
            if groups:
                raw["model_groups"] = groups
            else:
                raw.pop("model_groups", None)  # no group left: no empty block in the file

        await _edit(request, change)
    except AdminBadRequest as exc:
        return exc.response()
    return json_response({"model_groups": groups_view(request.app[GATEWAY])})


def add_routes(app: web.Application, wrap: Callable[[Any], Any]) -> None:
    app.router.add_get("/api/model-groups", wrap(list_groups))
    app.router.add_put("/api/model-groups", wrap(put_groups))

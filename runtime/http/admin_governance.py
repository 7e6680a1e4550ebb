"""/api/governance/virtual-keys: create (the value shown once), list, read, update (disable), rotate, delete.

Go Bifrost's paths and answer shapes (`{"virtual_key": {...}}`, `{"virtual_keys": [...], "count"}`).
One difference, on purpose: a key's value is never shown again after creation or rotation; config.json
stores only its digest (`value_sha256`), so neither the file nor any answer can leak it. Edits go
through the config store like every admin edit (validated, written atomically, applied to this worker
at once and to the others by the file watcher): keys change live, without a restart.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

from aiohttp import web

from runtime.governance.entities import VK_PREFIX
from runtime.http.admin_common import AdminBadRequest, fail, json_response, read_object
from runtime.http.admin_governance_entities import Views, apply_inline, page, restart_note
from runtime.http.admin_providers import _edit
from runtime.http.keys import GATEWAY
from runtime.stores.config import Raw

BASE = "/api/governance/virtual-keys"
# Fields a client may set; `id` only at creation, the value never (the gateway makes it).
EDITABLE = (
    "name",
    "description",
    "is_active",
    "team_id",
    "customer_id",
    "budget_id",
    "rate_limit_id",
    "provider_configs",
    "expires_at",
)
_SECRET_FIELDS = ("value", "value_sha256")


def _new_value() -> str:
    return VK_PREFIX + secrets.token_urlsafe(32)  # 256 random bits


def _keys_of(raw: Raw) -> list[Any]:
    gov = raw.setdefault("governance", {})
    if not isinstance(gov, dict):
        raise AdminBadRequest("config.json `governance` is not an object; fix the file first")
    keys = gov.setdefault("virtual_keys", [])
    if not isinstance(keys, list):
        raise AdminBadRequest("config.json `governance.virtual_keys` is not a list; fix the file first")
    return keys


def _find(keys: list[Any], vk_id: str) -> int:
    for i, entry in enumerate(keys):
        if isinstance(entry, dict) and entry.get("id") == vk_id:
            return i
    raise AdminBadRequest(f"no virtual key with id {vk_id!r}", status=404, param="vk_id", code="not_found")


def _view(entry: dict[str, Any], value: str | None = None) -> dict[str, Any]:
    view = {k: v for k, v in entry.items() if k not in _SECRET_FIELDS}
    view.setdefault("is_active", True)
    if value is not None:
        view["value"] = value  # shown once, in the answer that made it
    return view


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    for secret in _SECRET_FIELDS:
        if secret in body:
            raise AdminBadRequest(
                f"{secret} is set by the gateway (create or rotate a key to get a new value)", param=secret
            )
    unknown = sorted(k for k in body if k not in EDITABLE and k not in ("id", "budget", "rate_limit"))
    if unknown:
        raise AdminBadRequest(f"unknown field {unknown[0]!r}; fields: {', '.join(EDITABLE)}", param=unknown[0])
    return {k: body[k] for k in EDITABLE if k in body}


async def _with_usage(views: Views, entry: dict[str, Any]) -> dict[str, Any]:
    """The key's view with its `budget` and `rate_limit` (and each provider config's) and their current usage."""
    view = await views.owner(_view(entry))
    pcs = view.get("provider_configs")
    if isinstance(pcs, list):
        view["provider_configs"] = [
            await views.owner(pc) if isinstance(pc, dict) and (pc.get("budget_id") or pc.get("rate_limit_id")) else pc
            for pc in pcs
        ]
    return view


async def list_keys(request: web.Request) -> web.Response:
    raw = request.app[GATEWAY].config.raw.get("governance")
    keys = raw.get("virtual_keys") if isinstance(raw, dict) else None
    try:
        entries, paging = page(request, [k for k in keys or () if isinstance(k, dict)], ("team_id", "customer_id"))
    except AdminBadRequest as exc:
        return exc.response()
    views = Views(request)
    items = [await _with_usage(views, k) for k in entries]
    return json_response({"virtual_keys": items, "count": len(items), **paging})


async def get_key(request: web.Request) -> web.Response:
    raw = request.app[GATEWAY].config.raw.get("governance")
    keys = raw.get("virtual_keys") if isinstance(raw, dict) else None
    for entry in keys or ():
        if isinstance(entry, dict) and entry.get("id") == request.match_info["vk_id"]:
            return json_response({"virtual_key": await _with_usage(Views(request), entry)})
    return fail(f"no virtual key with id {request.match_info['vk_id']!r}", 404, code="not_found", param="vk_id")


async def create_key(request: web.Request) -> web.Response:
    try:
        body = await read_object(request)
        entry = _fields(body)
        vk_id = body.get("id") or str(uuid.uuid4())
        if not isinstance(vk_id, str):
            raise AdminBadRequest("id must be a string", param="id")
        if "name" not in entry:
            raise AdminBadRequest("name is required", param="name")
        value = _new_value()
        entry = {"id": vk_id, **entry, "value_sha256": hashlib.sha256(value.encode()).hexdigest()}

        def change(raw: Raw) -> None:
            keys = _keys_of(raw)
            if any(isinstance(k, dict) and k.get("id") == vk_id for k in keys):
                raise AdminBadRequest(f"virtual key {vk_id!r} already exists", status=409, param="id")
            apply_inline(raw, entry, body)  # Go's inline `budget` / `rate_limit`
            keys.append(entry)

        await _edit(request, change)
    except AdminBadRequest as exc:
        return exc.response()
    view = {**await _with_usage(Views(request), entry), "value": value}  # the value: shown once, here
    answer = {"message": "Virtual key created successfully", "virtual_key": view}
    return json_response({**answer, **restart_note(request)}, status=201)


async def update_key(request: web.Request) -> web.Response:
    vk_id = request.match_info["vk_id"]
    try:
        body = await read_object(request)
        fields = _fields(body)
        updated: dict[str, Any] = {}

        def change(raw: Raw) -> None:
            keys = _keys_of(raw)
            i = _find(keys, vk_id)
            entry = {**keys[i], **fields}
            apply_inline(raw, entry, body)
            keys[i] = entry
            updated.update(entry)

        await _edit(request, change)
    except AdminBadRequest as exc:
        return exc.response()
    view = await _with_usage(Views(request), updated)
    return json_response({"message": "Virtual key updated successfully", "virtual_key": view})


async def rotate_key(request: web.Request) -> web.Response:
    vk_id = request.match_info["vk_id"]
    value = _new_value()
    rotated: dict[str, Any] = {}
    try:

        def change(raw: Raw) -> None:
            keys = _keys_of(raw)
            i = _find(keys, vk_id)
            entry = {k: v for k, v in keys[i].items() if k not in _SECRET_FIELDS}
            entry["value_sha256"] = hashlib.sha256(value.encode()).hexdigest()
            keys[i] = entry
            rotated.update(entry)

        await _edit(request, change)
    except AdminBadRequest as exc:
        return exc.response()
    return json_response({"message": "Virtual key rotated successfully", "virtual_key": _view(rotated, value)})


async def delete_key(request: web.Request) -> web.Response:
    vk_id = request.match_info["vk_id"]
    try:

        def change(raw: Raw) -> None:
            keys = _keys_of(raw)
            keys.pop(_find(keys, vk_id))

        await _edit(request, change)
    except AdminBadRequest as exc:
        return exc.response()
    return json_response({"message": "Virtual key deleted successfully"})


def add_routes(app: web.Application, wrap: Any) -> None:
    r = app.router
    r.add_get(BASE, wrap(list_keys))
    r.add_post(BASE, wrap(create_key))
    r.add_get(BASE + "/{vk_id}", wrap(get_key))
    r.add_put(BASE + "/{vk_id}", wrap(update_key))
    r.add_delete(BASE + "/{vk_id}", wrap(delete_key))
    r.add_post(BASE + "/{vk_id}/rotate", wrap(rotate_key))

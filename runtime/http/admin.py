"""The management surface: /api (JSON, described at /api/openapi.json), /ws (live log feed).

`add_routes(app)` builds the admin state for this worker (the app's config store, a read side of
its log store, live hub, admin auth) and mounts the route modules. Every admin handler is wrapped by the
auth guard when the gateway listens off loopback; inference routes are untouched, so they pay
nothing for any of this.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial

from aiohttp import web

from runtime.http import (
    admin_cache,
    admin_governance,
    admin_governance_entities,
    admin_groups,
    admin_guardrails,
    admin_logs,
    admin_providers,
    admin_ws,
    openapi,
)
from runtime.http.admin_auth import COOKIE, AdminAuth, guard
from runtime.http.admin_common import ADMIN, AdminBadRequest, AdminState, fail, json_response, read_object
from runtime.http.admin_sessions import SESSION_TTL_S
from runtime.http.admin_ws import LiveHub
from runtime.http.keys import CONFIG, CONFIG_STORE, LOG_STORE, LOG_WRITER


async def get_session(request: web.Request) -> web.Response:
    auth = request.app[ADMIN].auth
    return json_response({"auth_required": auth.required, "authenticated": auth.allowed(request)})


async def create_session(request: web.Request) -> web.Response:
    """Exchange the admin token for an HttpOnly cookie (the UI's sign-in form)."""
    auth = request.app[ADMIN].auth
    try:
        body = await read_object(request)
    except AdminBadRequest as exc:
        return exc.response()
    token = body.get("token")
    if not auth.required:
        return json_response({"auth_required": False, "authenticated": True})
    if not isinstance(token, str) or not auth.valid(token):
        return fail("that is not the admin token", 401, code="invalid_admin_token", type="authentication_error")
    assert auth.sessions is not None  # a token is required, so sessions exist
    session_id = await asyncio.to_thread(auth.sessions.create)
    response = json_response({"auth_required": True, "authenticated": True})
    response.set_cookie(COOKIE, session_id, httponly=True, samesite="Strict", path="/", max_age=SESSION_TTL_S)
    return response


async def delete_session(request: web.Request) -> web.Response:
    """Sign out: the session is revoked server-side (every worker), not just forgotten by this browser."""
    auth = request.app[ADMIN].auth
    session_id = request.cookies.get(COOKIE)
    if session_id and auth.sessions is not None:
        await asyncio.to_thread(auth.sessions.revoke, session_id)
    response = json_response({"authenticated": False})
    response.del_cookie(COOKIE, path="/")
    return response


def add_routes(app: web.Application) -> None:
    config = app[CONFIG]
    writer = app.get(LOG_WRITER)
    store = app[CONFIG_STORE]
    auth = AdminAuth.for_config(config)
    log_store = app.get(LOG_STORE)
    queries = log_store.reader() if log_store is not None else None
    # Rows written by other processes reach the live feed by polling the store's tail: other workers, and
    # with a PostgreSQL log store other instances too. One process on its own file is fed its own batches.
    hub = LiveHub(queries, poll=config.workers > 1 or config.stores.logs is not None)
    if writer is not None:
        writer.listeners.append(hub.on_batch)
    app[ADMIN] = AdminState(store=store, auth=auth, queries=queries, hub=hub)

    async def read_side(_app: web.Application) -> AsyncIterator[None]:
        yield
        await hub.close()
        if queries is not None:
            await queries.close()

    app.cleanup_ctx.append(read_side)
    wrap = partial(guard, auth)
    r = app.router
    # Sessions need no token (the UI asks whether to show its sign-in form) but are still guarded
    # against cross-site use.
    public = partial(guard, auth, public=True)
    r.add_get("/api/session", public(get_session))
    r.add_post("/api/session", public(create_session))
    r.add_delete("/api/session", public(delete_session))
    admin_providers.add_routes(app, wrap)
    admin_governance.add_routes(app, wrap)  # /api/governance/virtual-keys (issue 11)
    admin_governance_entities.add_routes(app, wrap)  # teams, customers, budgets, rate-limits
    admin_logs.add_routes(app, wrap)
    admin_cache.add_routes(app, wrap)  # /api/cache (issue 12)
    admin_groups.add_routes(app, wrap)  # /api/model-groups (issue 13)
    admin_guardrails.add_routes(app, wrap)  # /api/guardrails (issue 15)
    admin_ws.add_routes(app, wrap)
    r.add_get("/api/openapi.json", wrap(openapi.serve))

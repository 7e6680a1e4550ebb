"""GET /health (liveness, at a glance), GET /ready (readiness, for a load balancer) and /api/drain.

/health is liveness: always 200 while the process answers. It shows each store's state as its own
operations last saw it (runtime/stores/status.py): `"status": "degraded"` when one is down. It never
does I/O: a probe must stay cheap and must not hang on the store it reports.

/ready is readiness: 200 `{"ready": true}`, or 503 `{"ready": false, "reason": ...}` while this instance
is draining, so a load balancer stops sending it new requests (requests that still arrive are served):

- after SIGTERM/SIGINT, during the shutdown grace (runtime/http/drain.py marks `stopping`);
- after `POST /api/drain` (admin-authenticated like every /api route), until `DELETE /api/drain`.

The admin drain must hold for every worker of the instance (`--workers N`), but the request lands on one.
It is a marker file, `<app_dir>/draining`, checked with one stat() per probe: local to the instance (with
Redis shared state, a key would be shared by every instance, and a probe would do network I/O on a store
that can be down, the very thing /ready must not depend on), visible to every worker at once, and it
survives a worker restart. It also survives an instance restart, on purpose: an instance drained for
maintenance stays out of rotation until an operator undoes it (DELETE /api/drain, or remove the file).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from runtime.http.admin_auth import guard
from runtime.http.admin_common import ADMIN, json_response
from runtime.http.cache_view import cache_plugin
from runtime.http.drain import DRAIN
from runtime.http.keys import CONFIG, CONFIG_STORE, GATEWAY, LOG_STORE, LOG_WRITER, SHARED_STATE
from runtime.stores.status import DOWN, StoreStatus

DRAIN_MARKER = "draining"  # in the app dir


def store_statuses(app: web.Application) -> dict[str, StoreStatus | None]:
    """Each store's StoreStatus (None when the store is absent or does not report one). No I/O."""
    cache = cache_plugin(app[GATEWAY])
    stores: dict[str, Any] = {
        "config": app.get(CONFIG_STORE),
        "logs": app.get(LOG_STORE),
        "shared_state": app.get(SHARED_STATE),
        "cache": getattr(cache, "store", None),  # the live semantic_cache plugin's store, if any
    }
    out: dict[str, StoreStatus | None] = {}
    for name, store in stores.items():
        status = getattr(store, "status", None)
        out[name] = status if isinstance(status, StoreStatus) else None
    return out


def _headers(request: web.Request) -> dict[str, str]:
    return {"x-request-id": request.app[GATEWAY].new_id(), "x-bf-overhead-us": "0"}


async def health(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    writer = request.app.get(LOG_WRITER)
    stores = store_statuses(request.app)
    down = any(s is not None and s.state == DOWN for s in stores.values())
    body = {
        "status": "degraded" if down else "ok",
        "pid": os.getpid(),
        "providers": sorted(gw.router.handles),
        "profile": gw.config.tuning.profile,
        "request_log": None
        if writer is None
        # dropped: rows never written, any reason; failed: of those, rows the database refused.
        else {"written": writer.written, "pending": writer.pending, "dropped": writer.dropped, "failed": writer.failed},
        "stores": {name: None if s is None else s.view() for name, s in stores.items()},
    }
    return web.json_response(body, headers=_headers(request))


def _marker(app: web.Application) -> Path:
    return Path(app[CONFIG].app_dir) / DRAIN_MARKER


def not_ready_reason(app: web.Application) -> str | None:
    """Why this worker is not ready, or None: one attribute read and one stat()."""
    if app[DRAIN].stopping:
        return "shutting down: draining in-flight requests"
    try:
        os.stat(_marker(app))
    except OSError:
        return None
    return "drained by an admin (POST /api/drain); DELETE /api/drain undoes it"


async def ready(request: web.Request) -> web.Response:
    reason = not_ready_reason(request.app)
    if reason is None:
        return web.json_response({"ready": True}, headers=_headers(request))
    return web.json_response({"ready": False, "reason": reason}, status=503, headers=_headers(request))


async def _drain_on(request: web.Request) -> web.Response:
    marker = _marker(request.app)
    # Written atomically enough for a stat(): the content is only for an operator reading the file.
    marker.write_text(f"drained at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} by POST /api/drain\n")
    return json_response({"draining": True, "ready": False})


async def _drain_off(request: web.Request) -> web.Response:
    _marker(request.app).unlink(missing_ok=True)
    stopping = request.app[DRAIN].stopping
    return json_response({"draining": stopping, "ready": not stopping})


def _admin(handler: Any) -> Any:
    """`handler` behind the admin guard. The admin state is built after these routes (admin.add_routes),
    and its auth follows live config changes: looked up per request (an admin call, rare)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse = await guard(request.app[ADMIN].auth, handler)(request)
        return response

    return guarded


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_post("/api/drain", _admin(_drain_on))
    app.router.add_delete("/api/drain", _admin(_drain_off))

"""The web UI: `ui_dist/` served as static files at `/` (index.html) and `/assets/...`.

No build step runs at serve time: ui_dist holds plain ES modules and CSS. Off loopback the UI needs
the admin token like /api does; a visitor without it gets the self-contained sign-in page (status
401), which posts the token to /api/session and reloads.
"""

from __future__ import annotations

from aiohttp import web

from runtime.http.admin_common import ADMIN
from runtime.paths import ui_dist_dir

_NO_UI = """<!doctype html><meta charset="utf-8"><title>Bifrost</title>
<body style="font-family:system-ui;max-width:40rem;margin:4rem auto">
<h1>Bifrost is running</h1><p>This build has no web UI (ui_dist/ is missing). The management API is at
<a href="/api/openapi.json">/api/openapi.json</a>.</p></body>"""
_CACHE = {"Cache-Control": "no-cache"}  # revalidate: a new version must show up on reload


def _signed_in(request: web.Request) -> bool:
    return request.app[ADMIN].auth.allowed(request)


def add_routes(app: web.Application) -> None:
    root = ui_dist_dir()

    async def index(request: web.Request) -> web.StreamResponse:
        if not _signed_in(request):
            if root is None:
                return web.Response(status=401, text="admin token required", content_type="text/plain")
            return web.FileResponse(root / "login.html", status=401, headers=_CACHE)
        if root is None:
            return web.Response(text=_NO_UI, content_type="text/html")
        return web.FileResponse(root / "index.html", headers=_CACHE)

    async def asset(request: web.Request) -> web.StreamResponse:
        if root is None or not _signed_in(request):
            raise web.HTTPNotFound()
        assets = (root / "assets").resolve()
        path = (assets / request.match_info["path"]).resolve()
        if not path.is_relative_to(assets) or not path.is_file():  # no ../ escapes
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers=_CACHE)

    app.router.add_get("/", index)
    app.router.add_get("/assets/{path:.+}", asset)

"""/api/openapi.json describes every /api route the app serves."""

from __future__ import annotations

from pathlib import Path

from runtime.app import create_app
from runtime.config.model import GatewayConfig
from runtime.http.openapi import DOCUMENT

from .conftest import Api


def test_every_api_route_is_documented(tmp_path: Path) -> None:
    app = create_app(GatewayConfig(app_dir=tmp_path))
    served: set[tuple[str, str]] = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if (path.startswith("/api/") or path == "/ws") and route.method != "HEAD":
            served.add((path, route.method.lower()))
    documented = {
        (path, method) for path, item in DOCUMENT["paths"].items() for method in item if method != "parameters"
    }
    assert served == documented


def test_served_document(api: Api) -> None:
    doc = api.get("/api/openapi.json").body
    assert doc["openapi"].startswith("3.") and "/api/providers/{name}" in doc["paths"]
    refs = {s for s in str(doc).split("'") if s.startswith("#/components/schemas/")}
    assert all(r.rsplit("/", 1)[1] in doc["components"]["schemas"] for r in refs)

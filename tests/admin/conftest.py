"""Fixtures for the admin API tests: a small JSON client and a gateway whose "openai" is a fake.

Reuses the shared harness (tests/conftest.py: fake_openai, start_gateway); nothing here starts
processes of its own.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeOpenAI
from harness import Gateway, StartGateway, make_config, openai_provider

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Answer:
    status: int
    body: Any
    text: str
    headers: Mapping[str, str]


class Api:
    """`api.get("/api/providers")` -> Answer; JSON in, JSON out, no exceptions for HTTP errors."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url
        self.token = token

    def call(self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        for k, v in (headers or {}).items():
            request.add_header(k, v)
        try:
            with _OPENER.open(request, timeout=30) as response:
                status, raw, hdrs = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as err:
            status, raw, hdrs = err.code, err.read(), dict(err.headers)
        text = raw.decode("utf-8", "replace")
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return Answer(status, parsed, text, hdrs)

    def get(self, path: str, **kw: Any) -> Answer:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return self.call("POST", path, body if body is not None else {}, **kw)

    def put(self, path: str, body: Any, **kw: Any) -> Answer:
        return self.call("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Answer:
        return self.call("DELETE", path, **kw)

    def chat(self, model: str, content: str = "hi", **extra: Any) -> Answer:
        return self.post(
            "/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": content}], **extra}
        )


@pytest.fixture
def admin_gateway(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> Gateway:
    """A gateway whose provider "openai" is the fake (key sk-fake-1, allowed on every model)."""
    return start_gateway(make_config({"openai": openai_provider(fake_openai.url)}))


@pytest.fixture
def api(admin_gateway: Gateway) -> Api:
    return Api(admin_gateway.base_url)


def read_config(gateway: Gateway) -> dict[str, Any]:
    return json.loads((gateway.app_dir / "config.json").read_text())


# -- the browser (Playwright driving Debian's chromium), shared by the UI tests ---------------------------
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _need_browser() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "the playwright package is not installed (pip install -e .[test])"
    else:
        if CHROMIUM.exists():
            return sync_playwright
        reason = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"browser tests must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def browser_page() -> Iterator[Any]:
    sync_playwright = _need_browser()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1360, "height": 900}, color_scheme="light")
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            yield page
        finally:
            context.close()
            browser.close()
        assert not errors, f"JavaScript errors in the page: {errors}"


def shot(page: Any, name: str) -> None:
    """A full-page screenshot to artifacts/screenshots/, after checking no placeholder leaked into the text."""
    text = page.inner_text("body")
    assert "[object " not in text and "undefined" not in text and "NaN" not in text, f"{name}: {text[:2000]}"
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

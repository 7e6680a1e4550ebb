"""The Providers page shows a breaker's state per key and model (headless Debian chromium, Playwright):
an open model breaker and a key set aside after a 401 get their badges; healthy ones show none."""

from __future__ import annotations

from typing import Any

import pytest
from admin.conftest import browser_page, shot  # noqa: F401  (fixtures are found by name in this module)
from fakes import FakeOpenAI
from harness import StartGateway, make_config, openai_provider
from harness.config import key

from .helpers import SERVER_ERROR, ask_status

pytestmark = pytest.mark.browser


def test_providers_page_shows_breaker_badges(
    browser_page: Any,  # noqa: F811
    start_gateway: StartGateway,
    fake_openai: FakeOpenAI,
) -> None:
    from playwright.sync_api import expect

    # "revoked" is not a key the fake accepts: its 401 opens the key's breaker; the model's 5xx open its own.
    entry = openai_provider(fake_openai.url, (key("sk-revoked", name="revoked"), key("sk-fake-1", name="good")))
    entry["circuit_breaker"] = {"consecutive_failures": 2, "cooldown_seconds": 60}
    gateway = start_gateway(make_config({"openai": entry}))
    fake_openai.always(SERVER_ERROR)
    for _ in range(3):
        assert ask_status(gateway) in (401, 500)
    page = browser_page
    page.goto(gateway.base_url + "/#/providers")
    card = page.locator('[data-provider="openai"]')
    expect(card.get_by_test_id("model-health-gpt-4o-mini")).to_have_text("open")
    expect(card.get_by_test_id("model-health-gpt-4o-mini")).to_have_class("badge err")
    expect(card.get_by_test_id("key-health-revoked")).to_have_text("open")
    shot(page, "60-providers-breakers")

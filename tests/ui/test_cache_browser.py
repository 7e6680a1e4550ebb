"""Issue 12 item 6, the Cache page in headless Debian chromium (Playwright), against a real gateway and a
fake provider: switch caching on in the browser (config.json gets the semantic_cache entry), ask the same
question twice with the official openai SDK, see the hit in the cards (hit rate, money, tokens) and the
entry in the table, open it (the stored answer), search, delete it, clear all. Screenshots go to
artifacts/screenshots/ like the other UI tests."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cache.conftest import StartCache
from harness import Gateway

from .conftest import shot

pytestmark = pytest.mark.browser

QUESTION = "what is the tallest mountain on earth?"


def ask(gw: Gateway, content: str) -> tuple[str | None, str | None, str | None]:
    with gw.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": content}]
        )
        answer = raw.parse()
        return answer.choices[0].message.content, raw.headers.get("x-bf-cache"), raw.headers.get("x-request-id")


def test_switch_caching_on_see_a_hit_and_its_entry_then_delete_it(
    browser_page: Any, start_cache_gateway: StartCache
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    gw = start_cache_gateway(None)  # caching off: no semantic_cache entry in config.json
    page.goto(gw.base_url + "/#/cache")
    expect(page.get_by_test_id("cache-off")).to_contain_text("Caching is off")
    expect(page.get_by_test_id("cache-empty")).to_contain_text("caching is off")
    switch = page.get_by_test_id("cache-switch")
    expect(switch).not_to_be_checked()
    shot(page, "40-cache-off")

    switch.click()
    expect(page.get_by_test_id("cache-state")).to_have_text("On")
    written = json.loads((gw.app_dir / "config.json").read_text())
    assert written["plugins"] == [
        {
            "name": "semantic_cache",
            "enabled": True,
            "config": {"dimension": 1, "ttl": 300, "default_cache_key": "default"},
        }
    ]
    expect(page.get_by_test_id("cache-restart")).to_have_count(0)  # applied live, no restart
    expect(page.get_by_test_id("cache-hit-rate")).to_contain_text("0")
    expect(page.get_by_test_id("cache-empty")).to_contain_text("No cached answers yet")

    text, state, request_id = ask(gw, QUESTION)
    assert state == "miss"
    again, state, _ = ask(gw, QUESTION)
    assert state == "hit-direct" and again == text
    page.get_by_test_id("cache-refresh").click()
    expect(page.get_by_test_id("cache-hit-rate")).to_contain_text("50")
    expect(page.get_by_test_id("cache-hit-rate")).to_contain_text("1 hit of 2 requests")
    expect(page.get_by_test_id("cache-saved-cost")).to_contain_text("$0.029")
    expect(page.get_by_test_id("cache-saved-tokens")).to_contain_text("7 prompt · 11 completion")
    expect(page.get_by_test_id("cache-entries-card")).to_contain_text("1")
    row = page.locator(f'tr[data-entry="{request_id}"]')
    expect(row).to_contain_text(QUESTION)
    expect(row.get_by_test_id("cache-hits")).to_have_text("1")
    shot(page, "41-cache-hit")

    # The stored answer, in the drawer.
    row.get_by_test_id("cache-prompt").click()
    detail = page.get_by_test_id("cache-detail")
    expect(detail.get_by_test_id("cache-detail-answer")).to_have_text(text or "")
    expect(detail.get_by_test_id("cache-detail-prompt")).to_contain_text(QUESTION)
    shot(page, "42-cache-entry")
    page.keyboard.press("Escape")
    expect(detail).to_have_count(0)

    # Search narrows the table on the server.
    page.get_by_test_id("cache-search").fill("no such prompt")
    expect(page.get_by_test_id("cache-empty")).to_contain_text("No entry matches")
    page.get_by_test_id("cache-search").fill("MOUNTAIN")
    expect(page.locator("tr[data-entry]")).to_have_count(1)
    page.get_by_test_id("cache-search").fill("")

    # Delete the entry: the same question misses again.
    row.get_by_test_id("cache-delete").click()
    row.get_by_test_id("confirm-yes").click()
    expect(page.get_by_test_id("cache-empty")).to_contain_text("No cached answers yet")
    assert ask(gw, QUESTION)[1] == "miss"

    # Clear all, with its confirmation.
    page.get_by_test_id("cache-refresh").click()
    expect(page.locator("tr[data-entry]")).to_have_count(1)
    page.get_by_test_id("cache-clear").click()
    page.get_by_test_id("confirm-yes").click()
    expect(page.get_by_test_id("cache-empty")).to_contain_text("No cached answers yet")
    expect(page.get_by_test_id("cache-entries-card")).to_contain_text("0 B")

    # A setting the config loader refuses is shown, its field marked; a good one is saved.
    settings = page.get_by_test_id("cache-settings")
    settings.locator('[data-field="ttl"]').fill("soon")
    page.get_by_test_id("cache-save").click()
    expect(settings.locator(".error-box")).to_contain_text("ttl")
    expect(settings.locator('[data-field="ttl"]')).to_have_class(re.compile("invalid"))
    settings.locator('[data-field="ttl"]').fill("120")
    page.get_by_test_id("cache-save").click()
    expect(page.locator("#toast")).to_contain_text("saved to config.json")
    expect(settings.locator(".error-box")).to_have_count(0)
    assert json.loads((gw.app_dir / "config.json").read_text())["plugins"][0]["config"]["ttl"] == 120
    shot(page, "43-cache-cleared")

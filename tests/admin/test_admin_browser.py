"""The real UI in headless Debian chromium (Playwright), against the real gateway and a fake provider.

Add a provider pointing at the fake, see a validation message, send a test request, watch a request
arrive live in Logs, open its detail, filter, and check the dashboard charts draw data. Screenshots of
every page go to artifacts/screenshots/ (CI keeps that folder).

chromium comes from Debian (`apt-get install chromium`; .ci/run installs it). Without it a local run
skips with a reason; in CI (env CI set) that is a failure instead.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from fakes import FakeOpenAI
from harness import Gateway, StartGateway, make_config

from .conftest import Api
from .conftest import shot as _shot

pytestmark = pytest.mark.browser


@pytest.fixture
def ui_gateway(start_gateway: StartGateway) -> Gateway:
    return start_gateway(make_config({}))  # only the built-in mock: the test adds the real provider


def test_configure_and_observe_from_the_browser(
    browser_page: Any, ui_gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    api = Api(ui_gateway.base_url)
    page.goto(ui_gateway.base_url + "/")
    expect(page.get_by_test_id("empty-dashboard")).to_be_visible()
    _shot(page, "01-dashboard-empty")

    # Providers: add one pointing at the fake; a bad URL first, to see the validation message.
    page.click("a[data-page=providers]")
    expect(page.get_by_test_id("empty-providers")).to_be_visible()
    page.get_by_test_id("add-provider").click()
    editor = page.get_by_test_id("provider-editor")
    editor.locator('[data-path="name"]').fill("local-fake")
    editor.locator('[data-path="network_config.base_url"]').fill("ftp://nowhere")
    editor.locator('[data-path="keys[0].value"]').fill("sk-fake-1")
    editor.locator('[data-path="keys[0].name"]').fill("primary")
    page.get_by_test_id("save-provider").click()
    expect(page.get_by_test_id("form-error")).to_contain_text("expected an http:// or https:// URL")
    expect(editor.locator('[data-path="network_config.base_url"]')).to_have_class(re.compile("invalid"))
    _shot(page, "02-providers-validation")
    editor.locator('[data-path="network_config.base_url"]').fill(fake_openai.url)
    page.get_by_test_id("save-provider").click()
    card = page.locator('[data-provider="local-fake"]')
    expect(card).to_be_visible()
    expect(card).to_contain_text("primary: ••••")
    assert "sk-fake-1" not in card.inner_text()

    # Send a test request from the card: the fake's answer shows.
    card.locator("input").fill("gpt-4o-mini")
    card.get_by_test_id("test-provider").click()
    expect(card.get_by_test_id("test-result")).to_contain_text("fake-openai: Say hello in five words.")
    _shot(page, "03-providers")

    # Logs: the test request is listed; a new request arrives live, without a reload.
    page.click("a[data-page=logs]")
    rows = page.get_by_test_id("log-rows").locator("tr")
    expect(rows).to_have_count(1)
    expect(page.locator("#live-dot.on")).to_be_visible()
    live_id = api.chat("local-fake/gpt-4o-mini", "a needle in the haystack").headers["x-request-id"]
    expect(page.locator(f'tr[data-id="{live_id}"]')).to_be_visible()
    for i in range(3):
        api.chat("mock/mock-chat", f"mock message {i}")
    api.chat("local-fake/not-a-real-model", "x", fallbacks=["nope/x"])  # a 400: something to filter for
    expect(rows).to_have_count(6)
    _shot(page, "04-logs-live")

    # Detail: request, response, timing waterfall.
    page.locator(f'tr[data-id="{live_id}"]').click()
    detail = page.get_by_test_id("log-detail")
    expect(detail.get_by_test_id("detail-request")).to_contain_text("a needle in the haystack")
    expect(detail.get_by_test_id("detail-response")).to_contain_text("fake-openai: a needle in the haystack")
    expect(detail.get_by_test_id("waterfall").locator(".wf-row")).to_have_count(7)
    _shot(page, "05-log-detail")
    page.keyboard.press("Escape")
    expect(detail).to_have_count(0)

    # Filters: text search, then provider.
    page.get_by_test_id("log-search").fill("needle")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", live_id)
    page.get_by_test_id("log-search").fill("")
    page.locator('select[data-filter="provider"]').select_option("mock")
    expect(rows).to_have_count(3)
    page.locator('select[data-filter="provider"]').select_option("")
    page.locator('select[data-filter="status"]').select_option("error")
    expect(rows).to_have_count(1)
    expect(rows.first.get_by_test_id("status")).to_have_text("400")
    _shot(page, "06-logs-filtered")

    # Dashboard: numbers and charts with data.
    page.click("a[data-page=dashboard]")
    expect(page.get_by_test_id("kpi-requests")).to_contain_text("6")
    charts = page.get_by_test_id("chart")
    expect(charts.first).to_be_visible()
    assert charts.count() >= 5
    assert page.locator("[data-testid=chart] path").count() >= 4  # lines drawn from data
    assert page.locator("[data-testid=chart] rect").count() >= 1  # token bars
    expect(page.get_by_test_id("stack-chart")).to_be_visible()
    expect(page.get_by_test_id("provider-table")).to_contain_text("local-fake")
    _shot(page, "07-dashboard")
    # The 7-day view asks for whole hours in 3-hour buckets (a PostgreSQL log answers it from its hourly
    # rollup alone), and still draws the requests.
    with page.expect_request(re.compile(r"/api/logs/histogram\?")) as asked:
        page.click("button[data-range='604800']")
    params = dict(parse_qsl(urlsplit(asked.value.url).query))
    hour = 3_600_000
    assert int(params["since"]) % hour == 0 and int(params["until"]) % hour == 0, params
    assert int(params["until"]) - int(params["since"]) == 7 * 24 * hour and params["buckets"] == "56"
    expect(page.get_by_test_id("kpi-requests")).to_contain_text("6")
    assert page.locator("[data-testid=chart] path").count() >= 4
    page.click("button[data-range='900']")  # back to the default for the pages below

    # Settings: client settings and the active tuning profile.
    page.click("a[data-page=settings]")
    profile = api.get("/api/config").body["profile"]
    expect(page.get_by_test_id("profile-name")).to_have_text(profile)
    page.locator('[data-setting="log_retention_days"]').fill("14")
    page.get_by_test_id("save-settings").click()
    expect(page.locator("#toast")).to_contain_text("Settings saved")
    assert api.get("/api/client").body["log_retention_days"] == 14
    # The Stores panel: each store's engine and state as /health reports them (embedded engines here).
    stores = page.get_by_test_id("stores")
    expect(stores.get_by_test_id("store-config")).to_contain_text("sqlite")
    expect(stores.get_by_test_id("store-state-config")).to_have_text("up")
    expect(stores.get_by_test_id("store-logs")).to_contain_text("sqlite")
    _shot(page, "08-settings")

    # Dark theme, remembered across reloads.
    page.click("#theme-toggle")
    page.click("a[data-page=dashboard]")
    expect(page.get_by_test_id("kpi-requests")).to_be_visible()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    _shot(page, "09-dashboard-dark")
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"


def test_small_screen_layout(browser_page: Any, ui_gateway: Gateway) -> None:
    page = browser_page
    page.set_viewport_size({"width": 390, "height": 844})
    Api(ui_gateway.base_url).chat("mock/mock-chat", "hello from a phone")
    page.goto(ui_gateway.base_url + "/#/logs")
    page.get_by_test_id("log-rows").locator("tr").first.wait_for()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, "the page itself must not scroll sideways on a phone (tables scroll inside their box)"
    _shot(page, "10-logs-mobile")


def test_edit_a_bedrock_key_region_keeps_its_secret(browser_page: Any, start_gateway: StartGateway) -> None:
    """Issue 9 item 17: the UI edits Bedrock keys, and saving one field keeps every other (secrets too)."""
    from playwright.sync_api import expect

    bedrock = {
        "keys": [
            {
                "name": "aws",
                "value": "",
                "models": [],
                "weight": 1,
                "bedrock_key_config": {
                    "access_key": "AKIAFAKEEXAMPLE",
                    "secret_key": "fake/secret+key",
                    "session_token": "env.BIFROST_TEST_AWS_SESSION",
                    "region": "us-west-2",
                    "deployments": {"claude": "us.anthropic.claude-sonnet-4-20250514-v1:0"},
                },
            }
        ],
        "network_config": {"base_url": "http://127.0.0.1:9", "default_request_timeout_in_seconds": 20},
    }
    gateway = start_gateway(make_config({"bedrock": bedrock}), env={"BIFROST_TEST_AWS_SESSION": "fake-session"})
    before = json.loads((gateway.app_dir / "config.json").read_text())
    page = browser_page
    page.goto(gateway.base_url + "/#/providers")
    card = page.locator('[data-provider="bedrock"]')
    expect(card).to_be_visible()
    assert "fake/secret+key" not in page.content() and "AKIAFAKEEXAMPLE" not in page.content()
    card.get_by_role("button", name="Edit").click()
    editor = page.get_by_test_id("provider-editor")
    region = editor.locator('[data-path="keys[0].bedrock_key_config.region"]')
    expect(region).to_have_value("us-west-2")
    secret = editor.locator('[data-path="keys[0].bedrock_key_config.secret_key"]')
    expect(secret).to_have_value("")  # never shown, not even masked, as a value
    assert "(unchanged)" in (secret.get_attribute("placeholder") or "")
    region.fill("eu-central-1")
    _shot(page, "11-providers-bedrock-key")
    page.get_by_test_id("save-provider").click()
    expect(page.locator("#toast")).to_contain_text("Saved bedrock")
    after = json.loads((gateway.app_dir / "config.json").read_text())
    expected = json.loads(json.dumps(before))
    expected["providers"]["bedrock"]["keys"][0]["bedrock_key_config"]["region"] = "eu-central-1"
    assert after == expected  # the secret, the session-token reference and every other field kept

"""Issue 11 item 6, the governance UI in headless Debian chromium (Playwright), against a real governed
gateway and a fake provider: create a virtual key in the browser, see its value once, use it with the
official openai SDK, find the request in Logs with its cost and key (and filter by the key), disable it
(403), rotate it (the old value 401, the new one works), delete it; the dashboard shows the cost. Teams
and Customers pages: created from the browser where this gateway serves their API, else a clear "not
available" state. Screenshots go to artifacts/screenshots/ like the other UI tests.
"""

from __future__ import annotations

import json
import re
from typing import Any

import openai
import pytest
from fakes import FakeOpenAI, Reply
from harness import Gateway, StartGateway
from harness.config import make_config, openai_provider

from .conftest import Api, shot

pytestmark = pytest.mark.browser

VK_CONFIG = "sk-bf-ui-config-key-0001"
PRICE_OUT = 0.001  # dollars per output token: 20 tokens = $0.02 a request
USAGE = {"prompt_tokens": 5, "completion_tokens": 20, "total_tokens": 25}
COST = "$0.02"
MESSAGES = [{"role": "user", "content": "hello from a virtual key"}]


def governed_ui_config(fake_url: str) -> dict[str, Any]:
    provider = openai_provider(fake_url)
    provider["pricing_overrides"] = [
        {
            "model_pattern": "*",
            "match_type": "wildcard",
            "input_cost_per_token": 0.0,
            "output_cost_per_token": PRICE_OUT,
        }
    ]
    config = make_config({"openai": provider}, enforce_auth_on_inference=True)
    config["governance"] = {
        "budgets": [
            {"id": "b-key", "max_limit": 5, "reset_duration": "1d"},
            {"id": "b-team", "max_limit": 50, "reset_duration": "1M"},
            {"id": "b-openai", "max_limit": 20, "reset_duration": "1w"},
        ],
        "rate_limits": [{"id": "rl-key", "request_max_limit": 100, "request_reset_duration": "1m"}],
        "customers": [{"id": "acme", "name": "Acme"}],
        "teams": [{"id": "search", "name": "Search", "customer_id": "acme", "budget_id": "b-team"}],
        "virtual_keys": [
            {
                "id": "vk-config",
                "name": "config key",
                "value": VK_CONFIG,
                "team_id": "search",
                "budget_id": "b-key",
                "rate_limit_id": "rl-key",
                "provider_configs": [{"provider": "openai", "budget_id": "b-openai"}],
            }
        ],
    }
    return config


def status_with(gw: Gateway, api_key: str) -> int:
    with gw.client(api_key=api_key) as client:
        try:
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        except openai.APIStatusError as err:
            return err.status_code
    return 200


@pytest.fixture
def governed_gateway(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> Gateway:
    fake_openai.always(Reply(usage=USAGE))
    return start_gateway(governed_ui_config(fake_openai.url))


def test_a_virtual_key_made_in_the_browser_is_shown_once_used_logged_with_its_cost_and_disabled(
    browser_page: Any, governed_gateway: Gateway
) -> None:
    from playwright.sync_api import expect

    page, gw = browser_page, governed_gateway
    page.goto(gw.base_url + "/#/virtual-keys")
    table = page.get_by_test_id("vk-table")
    expect(table.locator('tr[data-vk="vk-config"]')).to_contain_text("config key")
    expect(table.locator('tr[data-vk="vk-config"]')).to_contain_text(re.compile("search", re.I))  # its team
    assert VK_CONFIG not in page.content()
    openai_config = table.locator('tr[data-vk="vk-config"] [data-pc-provider="openai"]')
    if _reports_usage(gw):  # a provider config's own budget gets its own bar
        expect(openai_config.get_by_test_id("budget-bar")).to_contain_text("$20.00")
    else:
        expect(openai_config).to_contain_text("budget b-openai")

    # The search narrows the list in the page.
    page.get_by_test_id("vk-search").fill("no such key")
    expect(page.get_by_test_id("empty-vks")).to_contain_text("No virtual key matches")
    page.get_by_test_id("vk-search").fill("CONFIG")
    expect(table.locator("tbody tr")).to_have_count(1)
    page.get_by_test_id("vk-search").fill("")

    # Create: name, team, budget, rate limit and one provider with an allow-list.
    page.get_by_test_id("create-vk").click()
    editor = page.get_by_test_id("vk-editor")
    editor.locator('[data-field="name"]').fill("made in the ui")
    editor.locator('[data-field="team_id"]').select_option("team:search")
    editor.locator('[data-field="budget_id"]').select_option("b-key")
    editor.locator('[data-field="rate_limit_id"]').select_option("rl-key")
    page.get_by_test_id("add-pc").click()
    editor.locator('[data-pc="provider"]').select_option("openai")
    editor.locator('[data-pc="allowed_models"]').fill("gpt-4o-mini")
    shot(page, "20-vk-create-form")
    page.get_by_test_id("save-vk").click()

    # The value, once, with the warning; gone from the page after "I have copied it".
    box = page.get_by_test_id("secret-box")
    expect(box).to_contain_text("you will not see it again")
    value = page.get_by_test_id("vk-secret").input_value()
    assert value.startswith("sk-bf-") and len(value) > 40
    shot(page, "21-vk-secret-shown-once")
    page.get_by_test_id("secret-done").click()
    expect(box).to_have_count(0)
    assert value not in page.content()
    assert value not in page.evaluate("JSON.stringify([{...localStorage}, {...sessionStorage}])")  # never kept
    created = Api(gw.base_url).get("/api/governance/virtual-keys").body["virtual_keys"]
    new = next(k for k in created if k["name"] == "made in the ui")
    assert new["team_id"] == "search" and new["budget_id"] == "b-key" and new["rate_limit_id"] == "rl-key"
    assert new["provider_configs"] == [{"provider": "openai", "allowed_models": ["gpt-4o-mini"]}]
    assert value not in (gw.app_dir / "config.json").read_text()
    row = table.locator(f'tr[data-vk="{new["id"]}"]')
    expect(row.get_by_test_id("vk-status")).to_have_text("active")
    expect(row).to_contain_text("gpt-4o-mini")
    expect(row).to_contain_text("b-key")  # its budget (a usage bar where the API reports usage)

    # The openai SDK with the new key; one more request with the config's key, to filter against.
    assert status_with(gw, value) == 200
    assert status_with(gw, VK_CONFIG) == 200
    rows = gw.log.wait_rows(2)
    assert {r["virtual_key_id"] for r in rows} == {new["id"], "vk-config"}

    # Logs: each row shows its cost and its key's name; the key filter keeps only the new key's row.
    page.click("a[data-page=logs]")
    log_rows = page.get_by_test_id("log-rows").locator("tr")
    expect(log_rows).to_have_count(2)
    mine = log_rows.filter(has_text="made in the ui")
    expect(mine.get_by_test_id("row-cost")).to_have_text(COST)
    expect(log_rows.filter(has_text="config key").get_by_test_id("row-cost")).to_have_text(COST)
    page.locator('select[data-filter="virtual_key_id"]').select_option(new["id"])
    expect(log_rows).to_have_count(1)
    expect(log_rows.first.get_by_test_id("row-vk")).to_have_text("made in the ui")
    # A request made now arrives live in the filtered table, with its cost; the other key's does not.
    assert status_with(gw, value) == 200
    assert status_with(gw, VK_CONFIG) == 200
    expect(log_rows).to_have_count(2)
    expect(log_rows.get_by_test_id("row-cost")).to_have_text([COST, COST])
    expect(log_rows.get_by_test_id("row-vk")).to_have_text(["made in the ui", "made in the ui"])
    shot(page, "22-logs-cost-and-key-filter")
    log_rows.first.click()
    detail = page.get_by_test_id("log-detail")
    expect(detail.get_by_test_id("detail-cost")).to_have_text(COST)
    expect(detail.get_by_test_id("detail-vk")).to_have_text(new["id"])
    page.keyboard.press("Escape")

    # The key's "Logs" link opens Logs filtered by it.
    page.goto(gw.base_url + "/#/virtual-keys")
    table.locator('tr[data-vk="vk-config"]').get_by_test_id("vk-logs").click()
    expect(page.locator('select[data-filter="virtual_key_id"]')).to_have_value("vk-config")
    expect(log_rows).to_have_count(2)
    expect(log_rows.get_by_test_id("row-vk")).to_have_text(["config key", "config key"])
    if _has_route(gw, "/api/governance/teams"):  # the team filter: both keys are the Search team's
        page.locator('select[data-filter="virtual_key_id"]').select_option("")
        page.locator('select[data-filter="team_id"]').select_option("search")
        expect(log_rows).to_have_count(4)

    # Usage bars: where the API reports usage, the shared budget shows both requests' spend.
    page.click("a[data-page=virtual-keys]")
    if _reports_usage(gw):
        bar = row.get_by_test_id("budget-bar")
        expect(bar).to_contain_text("$5.00")
        expect(bar).to_have_attribute("data-used", re.compile(r"^0\.08"))
        expect(row.get_by_test_id("requests-bar")).to_contain_text("4 / 100")
    else:  # an API that only gives the budget's id: the id, no bar
        expect(row).to_contain_text("budget b-key")
    shot(page, "23-vk-usage-bars")

    # Dashboard: the total cost, and per model; where the log API filters by key and team, the
    # dashboard narrows to one key (and lists cost per key).
    page.click("a[data-page=dashboard]")
    requests = page.get_by_test_id("kpi-requests").locator(".value")
    expect(requests).to_have_text("4")
    expect(page.get_by_test_id("kpi-cost").locator(".value")).to_have_text("$0.08")
    expect(page.get_by_test_id("model-cost").first).to_have_text("$0.08")
    expect(page.get_by_test_id("cost-by-provider")).to_contain_text("openai")
    if _logs_filter_by_key(gw):
        expect(page.get_by_test_id("vk-cost-table").locator(f'tr[data-vk="{new["id"]}"]')).to_contain_text("$0.04")
        page.locator('select[data-scope="virtual_key_id"]').select_option(new["id"])
        expect(page.get_by_test_id("kpi-cost").locator(".value")).to_have_text("$0.04")
        expect(requests).to_have_text("2")
        page.locator('select[data-scope="virtual_key_id"]').select_option("")
        page.locator('select[data-scope="team_id"]').select_option("search")
        expect(requests).to_have_text("4")
        page.locator('select[data-scope="team_id"]').select_option("")
    else:
        expect(page.locator("select[data-scope]")).to_have_count(0)
    shot(page, "23-dashboard-cost")

    # Disable in the UI: the key is refused at once (403); enable it again.
    page.click("a[data-page=virtual-keys]")
    row.get_by_test_id("vk-toggle").click()
    expect(row.get_by_test_id("vk-status")).to_have_text("disabled")
    assert status_with(gw, value) == 403
    shot(page, "24-vk-disabled")
    row.get_by_test_id("vk-toggle").click()
    expect(row.get_by_test_id("vk-status")).to_have_text("active")
    assert status_with(gw, value) == 200

    # Rotate after the inline confirmation: a new value, shown once; the old one stops at once.
    row.get_by_test_id("vk-rotate").click()
    expect(row.get_by_test_id("confirm-yes")).to_be_visible()
    row.get_by_test_id("confirm-yes").click()
    expect(box).to_contain_text("you will not see it again")
    rotated = page.get_by_test_id("vk-secret").input_value()
    assert rotated.startswith("sk-bf-") and rotated != value
    page.get_by_test_id("secret-done").click()
    assert status_with(gw, value) == 401
    assert status_with(gw, rotated) == 200

    # Delete: Cancel keeps it; confirming removes it, and its value stops working.
    row.get_by_test_id("vk-delete").click()
    row.get_by_test_id("confirm-no").click()
    expect(row).to_have_count(1)
    row.get_by_test_id("vk-delete").click()
    row.get_by_test_id("confirm-yes").click()
    expect(row).to_have_count(0)
    assert status_with(gw, rotated) == 401
    assert rotated not in page.content() and value not in page.content()


def test_a_bad_field_is_shown_on_the_form(browser_page: Any, governed_gateway: Gateway) -> None:
    from playwright.sync_api import expect

    page, gw = browser_page, governed_gateway
    page.goto(gw.base_url + "/#/virtual-keys")
    page.get_by_test_id("create-vk").click()
    editor = page.get_by_test_id("vk-editor")
    editor.locator('[data-field="name"]').fill("openai twice")
    page.get_by_test_id("add-pc").click()
    page.get_by_test_id("add-pc").click()
    editor.locator('[data-pc="provider"]').nth(0).select_option("openai")
    editor.locator('[data-pc="provider"]').nth(1).select_option("openai")
    page.get_by_test_id("save-vk").click()
    expect(page.get_by_test_id("form-error")).to_contain_text("appears twice")
    expect(editor.locator('[data-pc="provider"]').nth(1)).to_have_class(re.compile("invalid"))
    expect(page.get_by_test_id("secret-box")).to_have_count(0)
    before = json.loads((gw.app_dir / "config.json").read_text())
    assert [k["id"] for k in before["governance"]["virtual_keys"]] == ["vk-config"]


def _has_route(gw: Gateway, path: str) -> bool:
    return Api(gw.base_url).get(path).status == 200


def _reports_usage(gw: Gateway) -> bool:
    """Whether GET /api/governance/virtual-keys embeds each key's budget with its current usage."""
    keys = Api(gw.base_url).get("/api/governance/virtual-keys").body["virtual_keys"]
    return any(isinstance(k.get("budget"), dict) and k["budget"].get("current_usage") is not None for k in keys)


def _logs_filter_by_key(gw: Gateway) -> bool:
    """Whether the log API applies team_id (a newer one refuses an unknown team; an older one ignores it)."""
    answer = Api(gw.base_url).get("/api/logs?limit=1&team_id=no-such-team")
    return answer.status == 400 and answer.body["error"]["param"] == "team_id"


def test_a_key_with_a_new_budget_of_its_own(browser_page: Any, governed_gateway: Gateway) -> None:
    """Go's inline `budget` at creation, where this gateway manages budgets; otherwise not offered."""
    from playwright.sync_api import expect

    page, gw = browser_page, governed_gateway
    page.goto(gw.base_url + "/#/virtual-keys")
    page.get_by_test_id("create-vk").click()
    editor = page.get_by_test_id("vk-editor")
    new_budget = editor.locator('[data-field="budget_id"] option', has_text="New budget")
    if not _has_route(gw, "/api/governance/budgets"):
        expect(new_budget).to_have_count(0)
        return
    editor.locator('[data-field="name"]').fill("own budget")
    editor.locator('[data-field="budget_id"]').select_option(label="New budget…")
    editor.locator('[data-field="budget"]').fill("10")  # above one request's worst case, 4096 tokens = $4.096
    editor.locator('[data-field="reset_duration"]').select_option("1d")
    page.get_by_test_id("save-vk").click()
    expect(page.get_by_test_id("secret-box")).to_be_visible()
    value = page.get_by_test_id("vk-secret").input_value()
    page.get_by_test_id("secret-done").click()
    listed = Api(gw.base_url).get("/api/governance/virtual-keys").body["virtual_keys"]
    made = next(k for k in listed if k["name"] == "own budget")
    assert made["budget"]["max_limit"] == 10 and made["budget"]["reset_duration"] == "1d"
    expect(page.locator(f'tr[data-vk="{made["id"]}"]').get_by_test_id("budget-bar")).to_contain_text("$10.00")
    assert status_with(gw, value) == 200


@pytest.mark.parametrize("kind", ["customers", "teams"])
def test_teams_and_customers_pages(browser_page: Any, governed_gateway: Gateway, kind: str) -> None:
    """Created from the browser with a budget, the budget edited, then deleted, where this gateway
    serves /api/governance/<kind>; otherwise the page says the feature is not available (no error)."""
    from playwright.sync_api import expect

    page, gw = browser_page, governed_gateway
    noun = kind[:-1]
    page.goto(gw.base_url + f"/#/{kind}")
    if not _has_route(gw, f"/api/governance/{kind}"):
        expect(page.get_by_test_id("unavailable")).to_contain_text("not available")
        expect(page.get_by_test_id(f"create-{noun}")).to_be_disabled()
        shot(page, f"25-{kind}-not-available")
        return

    table = page.get_by_test_id(f"{kind}-table")
    existing = "acme" if kind == "customers" else "search"
    expect(table.locator(f'tr[data-entity="{existing}"]')).to_be_visible()
    page.get_by_test_id(f"create-{noun}").click()
    editor = page.get_by_test_id(f"{noun}-editor")
    editor.locator('[data-field="name"]').fill(f"ui {noun}")
    if kind == "teams":
        editor.locator('[data-field="customer_id"]').select_option("acme")
    editor.locator('[data-field="budget"]').fill("10")
    editor.locator('[data-field="reset_duration"]').select_option("1d")
    page.get_by_test_id(f"save-{noun}").click()
    row = table.locator("tr", has_text=f"ui {noun}")
    expect(row.get_by_test_id("budget-bar")).to_contain_text("$10")
    api = Api(gw.base_url)
    made = next(e for e in api.get(f"/api/governance/{kind}").body[kind] if e["name"] == f"ui {noun}")
    assert made["budget"]["max_limit"] == 10 and made["budget"]["reset_duration"] == "1d"
    if kind == "teams":
        assert made["customer_id"] == "acme"
    shot(page, f"25-{kind}")

    row.get_by_test_id("edit-budget").click()
    row.get_by_test_id("budget-editor").locator('[data-field="budget"]').fill("20")
    row.get_by_test_id("save-budget").click()
    expect(row.get_by_test_id("budget-bar")).to_contain_text("$20")

    row.get_by_test_id(f"delete-{noun}").click()
    row.get_by_test_id("confirm-yes").click()
    expect(row).to_have_count(0)
    assert all(e["name"] != f"ui {noun}" for e in api.get(f"/api/governance/{kind}").body[kind])
    # An entity still referred to is refused with the API's message, and stays listed.
    table.locator(f'tr[data-entity="{existing}"]').get_by_test_id(f"delete-{noun}").click()
    table.locator(f'tr[data-entity="{existing}"]').get_by_test_id("confirm-yes").click()
    expect(page.locator("#toast")).to_contain_text(re.compile("in use", re.I))
    expect(table.locator(f'tr[data-entity="{existing}"]')).to_be_visible()


def test_governance_pages_on_a_phone_and_in_the_dark(browser_page: Any, governed_gateway: Gateway) -> None:
    """The new pages keep the page itself from scrolling sideways on a phone (tables scroll in their box)."""
    from playwright.sync_api import expect

    page, gw = browser_page, governed_gateway
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(gw.base_url + "/#/virtual-keys")
    expect(page.get_by_test_id("vk-table")).to_be_visible()
    page.get_by_test_id("create-vk").click()
    page.get_by_test_id("add-pc").click()
    for name in ("virtual-keys", "teams", "customers"):
        page.goto(gw.base_url + f"/#/{name}")
        page.locator("main h1").wait_for()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name} scrolls sideways by {overflow}px on a phone"
    shot(page, "26-customers-mobile")
    page.set_viewport_size({"width": 1360, "height": 900})
    page.click("#theme-toggle")
    page.goto(gw.base_url + "/#/virtual-keys")
    expect(page.get_by_test_id("vk-table")).to_be_visible()
    shot(page, "27-vk-dark")

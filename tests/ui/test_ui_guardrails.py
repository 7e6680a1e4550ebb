"""Issue 15 item 5, the Guardrails page in headless Debian chromium (Playwright) against a real gateway: a
rule whose CEL expression does not compile shows the API's error at the expression's field and nothing is
saved; then a pii provider and a rule created in the browser, and the test console redacting a valid card
number and listing the rule that fired. Screenshots go to artifacts/screenshots/ like the other UI tests."""

from __future__ import annotations

import json
from typing import Any

import pytest
from admin.conftest import admin_gateway  # noqa: F401  (the fixture, found by name)
from admin.test_admin_guardrails import need
from harness import Gateway

from .conftest import shot

pytestmark = pytest.mark.browser

CARD = "4111 1111 1111 1111"


def stored(gw: Gateway) -> dict[str, Any]:
    return json.loads((gw.app_dir / "config.json").read_text()).get("guardrails_config") or {}


def test_a_bad_cel_expression_shows_its_error_at_the_field(browser_page: Any, admin_gateway: Gateway) -> None:  # noqa: F811
    from playwright.sync_api import expect

    page = browser_page
    page.goto(admin_gateway.base_url + "/#/guardrails")
    expect(page.locator("a[data-page=guardrails]")).to_have_class("active")
    expect(page.get_by_test_id("guard-rules-empty")).to_be_visible()
    expect(page.get_by_test_id("guard-providers-empty")).to_be_visible()

    page.get_by_test_id("add-guard-rule").click()
    editor = page.get_by_test_id("guard-rule-editor")
    editor.locator("[data-field=name]").fill("openai-only")
    editor.locator("[data-field=apply_to]").select_option("input")
    cel = editor.locator("[data-field=cel_expression]")
    cel.fill("request.provider == ")
    editor.get_by_test_id("save-guard-rule").click()
    error = editor.get_by_test_id("field-error")
    expect(error).to_contain_text("not a valid CEL expression")
    expect(cel).to_have_class("mono invalid")
    # The message sits right under the expression's field.
    assert editor.locator("[data-field=cel_expression] + [data-testid=field-error]").count() == 1
    assert stored(admin_gateway) == {}
    shot(page, "60-guardrails-cel-error")

    # An unknown request field is named too; a fixed expression is saved and listed.
    cel.fill("request.provder == 'openai'")
    editor.get_by_test_id("save-guard-rule").click()
    expect(editor.get_by_test_id("field-error")).to_contain_text("request.provder")
    cel.fill("request.provider == 'openai'")
    editor.get_by_test_id("save-guard-rule").click()
    row = page.locator('tr[data-rule="openai-only"]')
    expect(row.get_by_test_id("rule-cel")).to_have_text("request.provider == 'openai'")
    expect(row.get_by_test_id("rule-stage")).to_have_text("input")
    expect(page.get_by_test_id("guard-rule-editor")).to_have_count(0)
    assert stored(admin_gateway)["guardrail_rules"][0]["cel_expression"] == "request.provider == 'openai'"

    row.get_by_test_id("delete-guard-rule").click()
    row.get_by_test_id("confirm-yes").click()
    expect(page.get_by_test_id("guard-rules-empty")).to_be_visible()
    assert stored(admin_gateway) == {}


def test_create_a_pii_provider_and_rule_then_the_console_redacts_a_card(
    browser_page: Any,
    admin_gateway: Gateway,  # noqa: F811
) -> None:
    need("runtime.guardrails.engine", "runtime.guardrails.detectors.pii")
    from playwright.sync_api import expect

    page = browser_page
    page.goto(admin_gateway.base_url + "/#/guardrails")
    page.get_by_test_id("add-guard-provider").click()
    editor = page.get_by_test_id("guard-provider-editor")
    editor.locator("[data-field=provider_name]").select_option("pii")
    editor.locator("[data-field=policy_name]").fill("cards")
    editor.locator("[data-field=action]").select_option("redact")
    config = editor.locator("[data-field=config]")
    config.fill('{"entities": ["credit_crad"]}')  # a misspelt entity: the kind's own check, at the config box
    editor.get_by_test_id("save-guard-provider").click()
    expect(editor.get_by_test_id("field-error")).to_contain_text("credit_crad")
    expect(config).to_have_class("mono invalid")
    assert stored(admin_gateway) == {}
    config.fill('{"entities": ["credit_card", "email"]}')
    editor.get_by_test_id("save-guard-provider").click()
    provider = page.locator("tr[data-provider='1']")
    expect(provider).to_contain_text("cards")
    expect(provider.get_by_test_id("provider-action")).to_have_text("redact")

    page.get_by_test_id("add-guard-rule").click()
    editor = page.get_by_test_id("guard-rule-editor")
    editor.locator("[data-field=name]").fill("mask-cards")
    editor.locator("[data-field=cel_expression]").fill("true")
    editor.locator("[data-provider-pick=cards]").check()
    editor.get_by_test_id("save-guard-rule").click()
    expect(page.locator('tr[data-rule="mask-cards"]').get_by_test_id("rule-providers")).to_have_text("cards")
    assert stored(admin_gateway)["guardrail_rules"][0]["provider_config_ids"] == [1]

    console = page.get_by_test_id("guard-console")
    console.get_by_test_id("console-text").fill(f"please charge {CARD} today")
    console.get_by_test_id("console-run").click()
    result = console.get_by_test_id("console-result")
    expect(result.get_by_test_id("console-verdict")).to_have_text("redacted")
    expect(result.locator('tr[data-fired="mask-cards"]').get_by_test_id("fired-action")).to_have_text("redact")
    expect(result.get_by_test_id("console-types")).to_contain_text("credit_card")
    out = result.get_by_test_id("console-text-out")
    expect(out).to_have_text("please charge [REDACTED:credit_card] today")
    expect(out.get_by_test_id("mask")).to_have_text("[REDACTED:credit_card]")
    assert CARD not in result.inner_text()
    shot(page, "61-guardrails-console")

    # The provider a rule uses cannot be deleted: the page says which rule.
    provider.get_by_test_id("delete-guard-provider").click()
    provider.get_by_test_id("confirm-yes").click()
    expect(page.locator("#toast")).to_contain_text("mask-cards")
    expect(page.locator("tr[data-provider='1']")).to_have_count(1)

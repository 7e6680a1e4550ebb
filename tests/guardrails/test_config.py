"""guardrails_config: Go Bifrost's block, checked with field paths at load (runtime/guardrails/config.py)."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from harness.guardrails_example import issue_example

from runtime.config.load import ConfigError, parse_document
from runtime.config.model import Tuning
from runtime.guardrails.config import parse_guardrails
from runtime.guardrails.types import BLOCK, BOTH, FAIL_CLOSED, INPUT, REDACT

# The issue's example, as written.
EXAMPLE: dict[str, Any] = issue_example()


def parse(block: dict[str, Any]) -> Any:
    warnings: list[str] = []
    return parse_guardrails(block, warnings), warnings


def broken(mutate: Any) -> ConfigError:
    block = copy.deepcopy(EXAMPLE)
    mutate(block)
    with pytest.raises(ConfigError) as info:
        parse_guardrails(block, [])
    return info.value


def test_the_issue_example_parses_as_written() -> None:
    config, warnings = parse(EXAMPLE)
    assert warnings == []
    assert config.active
    pii, secrets = config.providers[1], config.providers[2]
    assert (pii.provider_name, pii.policy_name, pii.action) == ("pii", "cards-and-emails", REDACT)
    assert (secrets.action, secrets.failure_policy) == (BLOCK, FAIL_CLOSED)
    mask, keys = config.rules
    assert mask.program is None and mask.apply_to == BOTH and mask.provider_ids == (1,)
    assert keys.program is not None and keys.apply_to == INPUT and keys.request_fields == {"provider"}
    assert keys.program.execute({"request": {"provider": "openai"}}) is True
    assert not keys.uses_findings


def test_the_example_loads_in_a_whole_document() -> None:
    _, _, warnings = parse_document({"guardrails_config": EXAMPLE}, {}, Tuning())
    assert not [w for w in warnings if "guardrails" in w]


@pytest.mark.parametrize(
    ("mutate", "path", "words"),
    [
        (
            lambda b: b["guardrail_rules"][1].update(cel_expression="request.provider =="),
            "guardrail_rules[1].cel_expression",
            "not a valid CEL",
        ),
        (
            lambda b: b["guardrail_rules"][1].update(cel_expression="request.provder == 'x'"),
            "guardrail_rules[1].cel_expression",
            "request.provder",
        ),
        (
            lambda b: b["guardrail_rules"][1].update(cel_expression="size(request.messages)"),
            "guardrail_rules[1].cel_expression",
            "true or false",
        ),
        (
            lambda b: b["guardrail_rules"][1].update(cel_expression="teams == 'a'"),
            "guardrail_rules[1].cel_expression",
            "Undefined variable",
        ),
        (
            lambda b: b["guardrail_rules"][0].update(apply_to="inputs"),
            "guardrail_rules[0].apply_to",
            "input, output, both",
        ),
        (lambda b: b["guardrail_rules"][0].update(sampling_rate=150), "guardrail_rules[0].sampling_rate", "0 to 100"),
        (
            lambda b: b["guardrail_rules"][0].update(provider_config_ids=[9]),
            "guardrail_rules[0].provider_config_ids[0]",
            "id 9",
        ),
        (lambda b: b["guardrail_rules"][1].update(name="mask-pii"), "guardrail_rules[1].name", "already"),
        (lambda b: b["guardrail_rules"][0].update(colour="red"), "guardrail_rules[0].colour", "unknown field"),
        (
            lambda b: b["guardrail_providers"][0].update(provider_name="pi"),
            "guardrail_providers[0].provider_name",
            "pii",
        ),
        (lambda b: b["guardrail_providers"][1].update(id=1), "guardrail_providers[1].id", "already"),
        (
            lambda b: b["guardrail_providers"][0]["config"].update(action="mask"),
            "guardrail_providers[0].config.action",
            "block, redact, flag",
        ),
        (
            lambda b: b["guardrail_providers"][0]["config"].update(failure_policy="open"),
            "guardrail_providers[0].config.failure_policy",
            "fail_open",
        ),
        (lambda b: b["guardrail_providers"][0].update(timeout=0), "guardrail_providers[0].timeout", "between"),
    ],
)
def test_errors_name_the_field(mutate: Any, path: str, words: str) -> None:
    err = broken(mutate)
    assert err.path == f"guardrails_config.{path}"
    assert words in err.message


@pytest.mark.parametrize("where", ["guardrail_providers", "guardrail_rules"])
def test_a_nan_timeout_is_refused(where: str) -> None:
    """config.json is read by a parser that accepts NaN: a NaN bound would pass `<= 0` and `> 600` both
    false, and then every remote check would time out at once."""
    err = broken(lambda b: b[where][0].update(timeout=float("nan")))
    assert err.path == f"guardrails_config.{where}[0].timeout"


def test_a_go_only_provider_is_a_warning_and_skipped() -> None:
    block = copy.deepcopy(EXAMPLE)
    block["guardrail_providers"].append({"id": 3, "provider_name": "bedrock", "config": {"guardrail_arn": "x"}})
    block["guardrail_rules"].append({"id": 3, "name": "aws", "provider_config_ids": [3]})
    config, warnings = parse(block)
    assert any("guardrail_providers[2]" in w and "bedrock" in w for w in warnings)
    assert 3 not in config.providers and config.rules[2].provider_ids == ()


def test_go_mode_is_the_action() -> None:
    block = copy.deepcopy(EXAMPLE)
    block["guardrail_providers"][1]["config"] = {"mode": "flag"}
    config, _ = parse(block)
    assert config.providers[2].action == "flag"


def test_findings_rules_and_bare_request_reads() -> None:
    block = copy.deepcopy(EXAMPLE)
    block["guardrail_rules"][0]["cel_expression"] = "findings.exists(f, f.type == 'credit_card')"
    block["guardrail_rules"][1]["cel_expression"] = "request.headers['x-team'] == 'a' || request.virtual_key == 'vk'"
    config, _ = parse(block)
    assert config.rules[0].uses_findings
    assert config.rules[1].request_fields == {"headers", "virtual_key"}


def test_a_config_pickles_for_spawned_workers() -> None:
    config, _ = parse(EXAMPLE)
    again = pickle.loads(pickle.dumps(config))
    assert [r.name for r in again.rules] == ["mask-pii", "no-keys-to-openai"]
    assert again.rules[1].program.execute({"request": {"provider": "anthropic"}}) is False


def test_no_enabled_provider_means_inactive() -> None:
    block = copy.deepcopy(EXAMPLE)
    for provider in block["guardrail_providers"]:
        provider["enabled"] = False
    config, _ = parse(block)
    assert not config.active

"""The detectors built through the config loader (runtime/guardrails/config.py and kinds.py): the issue's
example, each offline kind, and a detector's config error reported at its full path."""

from __future__ import annotations

from typing import Any

import pytest
from harness.guardrails_example import issue_example

from runtime.config.load import ConfigError
from runtime.guardrails.config import parse_guardrails
from runtime.guardrails.types import Subject


def _example() -> dict[str, Any]:
    """The issue's example plus a size provider on the second rule."""
    block = issue_example()
    block["guardrail_providers"].append(
        {"id": 3, "provider_name": "size", "config": {"max_messages": 100, "action": "block"}}
    )
    block["guardrail_rules"][1]["provider_config_ids"] = [2, 3]
    return block


EXAMPLE = _example()


def test_issue_example_builds_working_detectors() -> None:
    warnings: list[str] = []
    config = parse_guardrails(EXAMPLE, warnings)
    assert config is not None and warnings == []
    pii, secrets, size = (config.providers[i].detector for i in (1, 2, 3))
    assert (pii.kind, secrets.kind, size.kind) == ("pii", "secrets", "size")
    text = "card 4111 1111 1111 1111, mail a@b.io, +1 415 555 2671"
    assert [f.type for f in pii.scan(Subject("input", [text]))] == ["credit_card", "email"]  # phones not asked for
    key = "AKIA" + "IOSFODNN7EXAMPLE"
    assert [f.type for f in secrets.scan(Subject("input", [f"k {key}"]))] == ["aws_access_key"]
    assert config.providers[1].action == "redact" and config.providers[2].action == "block"


@pytest.mark.parametrize(
    ("provider", "path"),
    [
        ({"id": 1, "provider_name": "pii", "config": {"entities": ["emial"]}}, "config.entities[0]"),
        ({"id": 1, "provider_name": "secrets", "config": {"typo": 1}}, "config.typo"),
        ({"id": 1, "provider_name": "size", "config": {"action": "flag"}}, "config"),
    ],
)
def test_detector_config_error_carries_the_full_path(provider: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_guardrails({"guardrail_providers": [provider]}, [])
    assert err.value.path == f"guardrails_config.guardrail_providers[0].{path}"

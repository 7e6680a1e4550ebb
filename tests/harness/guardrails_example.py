"""The issue's example `guardrails_config` (issue 15), as written: one copy for every test that uses it.

`ISSUE_EXAMPLE_JSON` is the block's text exactly as the issue gives it; `issue_example()` a fresh dict of
it that a test may change.
"""

from __future__ import annotations

import json
from typing import Any

ISSUE_EXAMPLE_JSON = """{
  "guardrail_providers": [
    {"id": 1, "provider_name": "pii", "policy_name": "cards-and-emails", "enabled": true,
     "config": {"entities": ["credit_card", "email"], "action": "redact"}},
    {"id": 2, "provider_name": "secrets", "policy_name": "no-credentials", "enabled": true,
     "config": {"action": "block"}}],
  "guardrail_rules": [
    {"id": 1, "name": "mask-pii", "enabled": true, "cel_expression": "true",
     "apply_to": "both", "provider_config_ids": [1]},
    {"id": 2, "name": "no-keys-to-openai", "enabled": true,
     "cel_expression": "request.provider == 'openai'", "apply_to": "input", "provider_config_ids": [2]}]}"""


def issue_example() -> dict[str, Any]:
    block: dict[str, Any] = json.loads(ISSUE_EXAMPLE_JSON)
    return block

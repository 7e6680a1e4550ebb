"""Remote guardrail detectors: each asks something over the network for a verdict.

webhook.py     the operator's own HTTP service (JSON in, verdict out)
moderation.py  an OpenAI-style moderation model, called through the gateway's own routing
judge.py       a yes/no policy question put to a configured chat model, through the gateway

All three are `remote = True`, `streamable = False` (a stream is checked once, at its end) and implement
`async check(subject, gateway) -> list[Finding]`, bounded by their `timeout_s`, raising DetectorError on any
failure. Their error messages name the detector and the cause only: never the texts checked, a header
value, or a URL.
"""

from __future__ import annotations

import re

from runtime.guardrails.types import DetectorError

__all__ = ["DetectorError", "label_of", "token"]

_UNSAFE = re.compile(r"[^a-z0-9_./-]+")


def label_of(path: str) -> str:
    """The provider's place in the config ("guardrail_providers[2]") from its builder path
    ("guardrails_config.guardrail_providers[2].config"): names it in errors without naming its URL."""
    parts = path.split(".")
    if parts and parts[-1] == "config":
        parts = parts[:-1]
    return parts[-1] if parts else "guardrail"


def token(value: str, limit: int = 48) -> str:
    """A remote party's free text turned into a finding-type suffix: lower case, [a-z0-9_./-] only,
    bounded length. Finding types reach log rows and metric labels, so they must stay short and tame."""
    cleaned = _UNSAFE.sub("_", value.strip().lower()).strip("_")
    return cleaned[:limit] or "unspecified"

"""A gateway running the guardrails stand-in plugin (tests/plugins_example/bifrost_guardrails_standin.py),
installed the real way: a dist-info directory whose entry_points.txt names it in `bifrost.plugins`, on the
gateway's PYTHONPATH, and named in config.json `plugins`. Requests say what fired in `x-test-guardrails`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import make_config, openai_provider
from .process import REPO_ROOT, Gateway

EXAMPLES = REPO_ROOT / "tests" / "plugins_example"
HEADER = "x-test-guardrails"


def install(site: Path) -> Path:
    info = site / "bifrost_guardrails_standin-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bifrost-guardrails-standin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[bifrost.plugins]\nguardrails_standin = bifrost_guardrails_standin:GuardrailsStandin\n"
    )
    return site


def start_standin_gateway(start_gateway: Callable[..., Gateway], provider_url: str, site: Path, **kw: Any) -> Gateway:
    install(site)
    config = make_config({"openai": openai_provider(provider_url)})
    config["plugins"] = [{"name": "guardrails_standin", "enabled": True}]
    pythonpath = ":".join((str(REPO_ROOT), str(site), str(EXAMPLES)))
    return start_gateway(config, env={"PYTHONPATH": pythonpath}, **kw)


def fired_header(fired: list[dict[str, Any]]) -> dict[str, str]:
    return {HEADER: json.dumps(fired)}

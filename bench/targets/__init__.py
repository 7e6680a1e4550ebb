"""Benchmark targets: direct-to-mock, Bifrost, LiteLLM's proxy, Portkey's gateway (a table, not an if-chain)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.targets.base import Running, Target, TargetUnavailable
from bench.targets.bifrost import BifrostFullTarget, BifrostGovernedTarget, BifrostNoSpinTarget, BifrostTarget
from bench.targets.direct import DirectTarget
from bench.targets.floor import FloorAiohttpTarget, FloorRawTarget
from bench.targets.litellm import LiteLLMTarget
from bench.targets.portkey import PortkeyTarget

TARGETS: dict[str, Callable[..., Target]] = {
    "direct": DirectTarget,
    "bifrost": BifrostTarget,
    "bifrost-gov": BifrostGovernedTarget,  # governance on (issue 11): budgets + rate limit on every request
    "bifrost-full": BifrostFullTarget,  # every per-request feature on (issue 16): the `full` scenario
    "bifrost-nospin": BifrostNoSpinTarget,  # the idle spin off (issue 16 item 2): overhead's on/off cell
    "litellm": LiteLLMTarget,
    "portkey": PortkeyTarget,
    "floor-aiohttp": FloorAiohttpTarget,  # a bare aiohttp relay: the framework's floor (issue 16 item 2)
    "floor-raw": FloorRawTarget,  # the same relay with no HTTP framework: the floor below that
}


def make(name: str, **kwargs: Any) -> Target:
    """Build target ``name`` with only the options it understands."""
    cls = TARGETS[name]
    accepted = {
        "direct": {"mock_pid"},
        "bifrost": {"profile", "logging", "workers", "label", "cache", "sizing"},
        "bifrost-gov": {"profile", "logging", "workers", "label"},
        "bifrost-nospin": {"profile", "logging", "workers", "label"},
        "bifrost-full": {"profile", "logging", "workers", "label", "governance", "cache", "guardrails"},
        "litellm": {"workers", "auto_install"},
        "portkey": {"auto_install"},  # Node is single-threaded: always one process
        "floor-aiohttp": set(),
        "floor-raw": set(),
    }[name]
    return cls(**{k: v for k, v in kwargs.items() if k in accepted})


__all__ = [
    "TARGETS",
    "BifrostTarget",
    "DirectTarget",
    "LiteLLMTarget",
    "PortkeyTarget",
    "Running",
    "Target",
    "TargetUnavailable",
    "make",
]

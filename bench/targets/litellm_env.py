"""LiteLLM's proxy in its own virtualenv under bench/.venvs/litellm (git-ignored), installed by the suite."""

from __future__ import annotations

import os
import subprocess
import sys

from bench.mockproc import REPO_ROOT
from bench.targets.base import TargetUnavailable

VENV = os.path.join(REPO_ROOT, "bench", ".venvs", "litellm")
LITELLM_BIN = os.path.join(VENV, "bin", "litellm")
PIP_SPEC = "litellm[proxy]"


def installed() -> bool:
    return os.access(LITELLM_BIN, os.X_OK)


def version() -> str | None:
    py = os.path.join(VENV, "bin", "python")
    try:
        out = subprocess.run(
            [py, "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def ensure(auto_install: bool = True) -> str:
    """Path to the ``litellm`` CLI, installing ``litellm[proxy]`` into the venv first if needed."""
    if installed():
        return LITELLM_BIN
    if not auto_install:
        raise TargetUnavailable(f"litellm: not installed in {VENV} (run `python -m bench install-litellm`)")
    print(f"bench: installing {PIP_SPEC} into {VENV} (one-off, a few minutes)", file=sys.stderr, flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "--quiet", PIP_SPEC], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise TargetUnavailable(f"litellm: install failed: {exc}") from None
    if not installed():
        raise TargetUnavailable("litellm: installed, but no `litellm` CLI in the venv")
    return LITELLM_BIN

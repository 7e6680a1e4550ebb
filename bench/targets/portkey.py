"""Portkey's open-source gateway as the second peer: one Node.js process, offline, loopback only.

Portkey keeps no model list: each request names its provider and upstream in headers, so the
target hands the load generator ``x-portkey-provider: openai``, ``x-portkey-custom-host: <mock>/v1``
and a fake OpenAI key to send with every request.  Portkey then does the same work as Bifrost:
parse, route, call OpenAI (the mock), answer.

Offline: the start script makes no outbound call of its own (no telemetry in the bundle; its only
portkey.ai URLs belong to hosted guardrails and files, which these requests never use), ``--headless``
and ``NODE_ENV=production`` leave out the web UI and its log stream, and the environment is scrubbed
of proxies, Redis, cloud credentials and custom-host allow-lists.  A preload binds its listener to
127.0.0.1 (the script itself has no host flag).
"""

from __future__ import annotations

import os
import subprocess
import tempfile

from bench import control
from bench.pinning import Layout
from bench.targets import portkey_env
from bench.targets.base import Running, Target

LOOPBACK_PRELOAD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "portkey_loopback.mjs")
FAKE_KEY = "sk-bench-fake"
MODEL = "gpt-4o-mini"
# Environment the gateway must not inherit: proxies, a shared cache, cloud credentials, host lists.
_SCRUB_PREFIXES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NODE_OPTIONS",
    "REDIS_",
    "AWS_",
    "AZURE_",
    "KMS_",
    "TRUSTED_CUSTOM_HOSTS",
    "PORTKEY_",
    "OPENAI_",
    "APM_",
    "SSE_ENCRYPTION",
    "TLS_",
    "IDENTITY_",
    "ENVIRONMENT",
)


def request_headers(mock_origin: str) -> dict[str, str]:
    """What every request through Portkey carries: the provider, the mock as its upstream, a fake key."""
    return {
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": f"{mock_origin}/v1",
        "Authorization": f"Bearer {FAKE_KEY}",
    }


def child_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith(_SCRUB_PREFIXES)}
    env.update({"NODE_ENV": "production", "NO_PROXY": "127.0.0.1,localhost"})
    return env


def command(node: str, script: str, port: int, layout: Layout) -> list[str]:
    """The gateway's own bin (``build/start-server.js``: ``--port=N``, ``--headless``), loopback preloaded."""
    return [*layout.gateway_prefix(), node, "--import", LOOPBACK_PRELOAD, script, f"--port={port}", "--headless"]


def node_version(node: str) -> str:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.stdout.strip() or "?"


class PortkeyTarget(Target):
    """``node build/start-server.js --port=N --headless`` from bench/.venvs/portkey (always one process)."""

    name = "portkey"

    def __init__(self, *, auto_install: bool = True) -> None:
        super().__init__()
        self.auto_install = auto_install
        self.work_dir = ""

    def start(self, mock_origin: str, layout: Layout, port: int | None = None) -> Running:
        script = portkey_env.ensure(self.auto_install)
        node = portkey_env.node_binary()
        self.work_dir = tempfile.mkdtemp(prefix="bench-portkey-")
        port = port or control.free_port()
        proc = self._spawn_ready(
            command(node, script, port, layout),
            child_env(),
            os.path.join(self.work_dir, "portkey.log"),
            port=port,
            layout=layout,
            cwd=self.work_dir,
        )
        got = portkey_env.installed_versions()
        return Running(
            name=self.name,
            port=port,
            model=MODEL,
            pid=proc.pid,
            headers=request_headers(mock_origin),
            notes=[
                f"portkey gateway {got.get(portkey_env.PACKAGE, '?')} (hono {got.get('hono', '?')}, "
                f"@hono/node-server {got.get('@hono/node-server', '?')}), node {node_version(node)}, 1 process"
            ],
        )


__all__ = ["PortkeyTarget", "child_env", "command", "request_headers"]

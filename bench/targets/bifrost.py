"""Bifrost as a subprocess: ``python -m bifrost_cli serve`` with a config.json the suite writes.

The provider ``openai`` points at the mock (``network_config.base_url``) with a fake key.  With a
profile, lane sizes and client knobs are left to the profile (the gateway lets config.json beat the
profile, so writing them would silently override it); without one, they are made large.
After SIGTERM the gateway flushes its request log, which ``requestlog.read_stages`` then reads.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile

from bench import control
from bench.mockproc import REPO_ROOT, child_env
from bench.pinning import Layout
from bench.targets.base import Running, Target, TargetUnavailable


@functools.lru_cache(maxsize=1)
def serve_help() -> str:
    """``serve --help`` text, or raise TargetUnavailable when the gateway cannot start at all."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "bifrost_cli", "serve", "--help"],
            cwd=REPO_ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TargetUnavailable(f"bifrost: cannot run `python -m bifrost_cli serve --help`: {exc}") from None
    if out.returncode != 0:
        raise TargetUnavailable(
            "bifrost: `python -m bifrost_cli serve --help` failed: " + (out.stderr or out.stdout).strip()[-500:]
        )
    return out.stdout


def supports(flag: str) -> bool:
    return flag in serve_help()


def write_config(
    app_dir: str,
    mock_origin: str,
    *,
    logging: bool,
    profile: str | None,
    governance: bool = False,
    cache: dict[str, object] | None = None,
    guardrails: dict[str, object] | None = None,
) -> str:
    provider: dict[str, object] = {
        "keys": [{"name": "bench", "value": "sk-bench-fake", "models": [], "weight": 1.0}],
        "network_config": {"base_url": mock_origin, "default_request_timeout_in_seconds": 30, "max_retries": 0},
    }
    client: dict[str, object] = {"enable_logging": logging}
    if profile is None:
        provider["concurrency_and_buffer_size"] = {"concurrency": 2000, "buffer_size": 20000}
        client.update({"drop_excess_requests": False, "initial_pool_size": 20000})
    doc: dict[str, object] = {"providers": {"openai": provider}, "client": client}
    if governance:  # the built-in governance: a virtual key, its budgets and rate limit (bench/governance_plugin.py)
        from bench.governance_plugin import governance_config

        blocks = governance_config()
        client.update(blocks["client"])
        doc["governance"] = blocks["governance"]
    if cache is not None:  # response caching on (issue 12): Go's plugin entry, `cache` is its config block
        doc["plugins"] = [{"name": "semantic_cache", "enabled": True, "config": cache}]
    if guardrails is not None:  # guardrails on (issue 13): the `guardrails_config` block as given
        doc["guardrails_config"] = guardrails
    path = os.path.join(app_dir, "config.json")
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=2)
    return path


def tune_rps(app_dir: str, rps: int, latency_s: float) -> str:
    """Size the lanes as a user would: ``bifrost tune --rps N --latency S --write`` on the target's config.json
    (Go Bifrost's published rule). Returns the note for the cell; raises TargetUnavailable if tune fails."""
    cmd = [sys.executable, "-m", "bifrost_cli", "tune", "--rps", str(rps), "--latency", str(latency_s)]
    cmd += ["--write", "--app-dir", app_dir]
    try:
        out = subprocess.run(cmd, cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TargetUnavailable(f"bifrost: `bifrost tune --rps` failed: {exc}") from None
    if out.returncode != 0:
        raise TargetUnavailable("bifrost: `bifrost tune --rps` failed: " + (out.stderr or out.stdout).strip()[-500:])
    with open(os.path.join(app_dir, "config.json")) as fh:
        lanes = json.load(fh)["providers"]["openai"]["concurrency_and_buffer_size"]
    return (
        f"lanes sized by `bifrost tune --rps {rps} --latency {latency_s:g} --write`: "
        f"concurrency {lanes['concurrency']}, buffer_size {lanes['buffer_size']}"
    )


class BifrostTarget(Target):
    """One gateway process (``--workers 1`` unless told otherwise), pinned to the gateway CPU."""

    name = "bifrost"
    ready_path = "/health"

    def __init__(
        self,
        *,
        profile: str | None = None,
        logging: bool = True,
        workers: int = 1,
        label: str | None = None,
        governance: bool = False,
        cache: dict[str, object] | None = None,
        guardrails: dict[str, object] | None = None,
        sizing: tuple[int, float] | None = None,
        idle_spin_us: int | None = None,
    ) -> None:
        super().__init__()
        self.idle_spin_us = idle_spin_us  # None: the profile's
        self.sizing = sizing
        self.governance = governance
        self.cache = cache
        self.guardrails = guardrails
        self.profile = profile
        self.logging = logging
        self.workers = workers
        self.app_dir = ""
        if label:
            self.name = label

    def start(self, mock_origin: str, layout: Layout, port: int | None = None) -> Running:
        help_text = serve_help()
        notes = []
        profile = self.profile
        if profile and "--profile" not in help_text:
            notes.append(f"gateway has no --profile flag; ran without profile {profile!r}")
            print(f"bench: WARNING {notes[-1]}", file=sys.stderr)
            profile = None
        self.app_dir = tempfile.mkdtemp(prefix="bench-bifrost-")
        write_config(
            self.app_dir,
            mock_origin,
            logging=self.logging,
            profile=profile,
            governance=self.governance,
            cache=self.cache,
            guardrails=self.guardrails,
        )
        if self.sizing is not None:
            notes.append(tune_rps(self.app_dir, *self.sizing))
        port = port or control.free_port()
        cmd = [
            *layout.gateway_prefix(),
            sys.executable,
            "-m",
            "bifrost_cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--app-dir",
            self.app_dir,
            "--log-level",
            "warning",
        ]
        if "--workers" in help_text:
            cmd += ["--workers", str(self.workers)]
        if profile:
            cmd += ["--profile", profile]
        env = child_env()
        for key in [k for k in env if k.startswith("BIFROST_")]:
            del env[key]  # the suite's flags and config.json are the whole truth
        if self.idle_spin_us is not None:
            env["BIFROST_IDLE_SPIN_US"] = str(self.idle_spin_us)
            notes.append(f"BIFROST_IDLE_SPIN_US={self.idle_spin_us}")
        proc = self._spawn_ready(
            cmd,
            env,
            os.path.join(self.app_dir, "gateway.log"),
            port=port,
            layout=layout,
            cwd=REPO_ROOT,
        )
        headers: dict[str, str] = {}
        if self.governance:  # every request presents the virtual key, as an SDK with it as api_key does
            from bench.governance_plugin import VIRTUAL_KEY

            headers["Authorization"] = f"Bearer {VIRTUAL_KEY}"
        return Running(
            name=self.name,
            port=port,
            model="openai/gpt-4o-mini",
            pid=proc.pid,
            embedding_model="openai/text-embedding-3-small",
            notes=notes,
            headers=headers,
        )

    @property
    def log_db(self) -> str:
        return os.path.join(self.app_dir, "logs.db")


class BifrostGovernedTarget(BifrostTarget):
    """Bifrost with its built-in governance on: every request presents a virtual key (mandatory), and
    reserves and settles against the key's budget, its team's budget and its rate limit."""

    name = "bifrost-gov"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(governance=True, **kwargs)  # type: ignore[arg-type]


class BifrostNoSpinTarget(BifrostTarget):
    """Bifrost with the idle spin off (BIFROST_IDLE_SPIN_US=0): the spin's effect, on vs off, in one run."""

    name = "bifrost-nospin"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(idle_spin_us=0, **kwargs)  # type: ignore[arg-type]


# The full stack's feature blocks (the `full` scenario, issue 16 item 3).
# The exact cache: the semantic_cache plugin in direct mode (no embeddings) with a default cache key, so
# every request is looked up by its exact hash (no `x-bf-cache-key` header needed).
FULL_CACHE: dict[str, object] = {"dimension": 1, "ttl": "1h", "default_cache_key": "bench"}
# The PII guardrail on input: cards and e-mails redacted, on every request (CEL rule "true").
FULL_GUARDRAILS: dict[str, object] = {
    "guardrail_providers": [
        {
            "id": 1,
            "provider_name": "pii",
            "policy_name": "cards-and-emails",
            "enabled": True,
            "config": {"entities": ["credit_card", "email"], "action": "redact"},
        }
    ],
    "guardrail_rules": [
        {
            "id": 1,
            "name": "mask-pii",
            "enabled": True,
            "cel_expression": "true",
            "apply_to": "input",
            "provider_config_ids": [1],
        }
    ],
}


class BifrostFullTarget(BifrostTarget):
    """Bifrost with every per-request feature on: governance (a virtual key with budgets and a rate limit),
    the exact cache, the PII guardrail on input and the request log. Each can be turned off (the `full`
    scenario's on/off table starts from the bare gateway and turns one on at a time)."""

    name = "bifrost-full"

    def __init__(
        self, *, governance: bool = True, cache: bool = True, guardrails: bool = True, **kwargs: object
    ) -> None:
        super().__init__(  # type: ignore[arg-type]
            governance=governance,
            cache=dict(FULL_CACHE) if cache else None,
            guardrails=json.loads(json.dumps(FULL_GUARDRAILS)) if guardrails else None,
            **kwargs,
        )

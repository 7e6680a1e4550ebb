"""What guardrails cost per request: the engine's input check on a typical 2 KB chat body.

    python -m bench.guardrails_gateway [--iterations 20000] [--gateway [--requests 1500]]

The config is the issue's example (pii cards + e-mails redacted on both stages, secrets blocked for
requests routed to openai: a CEL rule reading `request.provider`, so the router's targets are resolved),
run by the real GuardrailEngine against a real Gateway built from a temp config.json (no network: the
check never calls a provider). Without the `secrets` detector installed the second rule is left out and
the report says so. Each iteration checks a fresh copy of the body (copies are made before timing) with
no finding in it: the common case. Also timed: the same body with one e-mail to redact.

`--gateway` also runs two real gateway processes (guardrails off, then on) against the bench's mock
provider (no latency) and sends the same 2 KB chat body one request at a time (c=1, keep-alive); each
answer's `x-bf-overhead-us` header is the gateway's own time for it: medians compared.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from runtime.config.load import load_gateway_config
from runtime.core.context import RequestContext
from runtime.core.gateway import Gateway
from runtime.core.hooks import Hooks
from runtime.guardrails.engine import GuardrailEngine, RequestState

PROSE = (
    "We are migrating the billing service to the new event bus. The consumer reads invoices, applies the "
    "discount rules from the pricing table and writes the ledger entries; retries use exponential backoff "
    "capped at thirty seconds. Please review the plan below and point out anything that could double-charge "
    "a customer during the cut-over window, in particular around idempotency keys and partial failures. "
)


def issue_config(with_secrets: bool) -> dict[str, Any]:
    providers: list[dict[str, Any]] = [
        {
            "id": 1,
            "provider_name": "pii",
            "policy_name": "cards-and-emails",
            "enabled": True,
            "config": {"entities": ["credit_card", "email"], "action": "redact"},
        },
    ]
    rules: list[dict[str, Any]] = [
        {
            "id": 1,
            "name": "mask-pii",
            "enabled": True,
            "cel_expression": "true",
            "apply_to": "both",
            "provider_config_ids": [1],
        },
    ]
    # Without the secrets detector, a regex of provider-key shapes stands in for it (same rule, same CEL).
    stand_in = {
        "patterns": [
            {"pattern": r"sk-[A-Za-z0-9_-]{20,}"},
            {"pattern": r"AKIA[0-9A-Z]{16}"},
            {"pattern": r"gh[pousr]_[A-Za-z0-9]{36}"},
        ]
    }
    providers.append(
        {
            "id": 2,
            "provider_name": "secrets" if with_secrets else "regex",
            "policy_name": "no-credentials",
            "enabled": True,
            "config": {"action": "block", **({} if with_secrets else stand_in)},
        }
    )
    if True:
        rules.append(
            {
                "id": 2,
                "name": "no-keys-to-openai",
                "enabled": True,
                "cel_expression": "request.provider == 'openai'",
                "apply_to": "input",
                "provider_config_ids": [2],
            }
        )
    return {"guardrail_providers": providers, "guardrail_rules": rules}


def chat_body(extra: str = "") -> dict[str, Any]:
    """About 2 KB of JSON: a system prompt and three turns of ordinary prose."""
    return {
        "model": "openai/gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a careful senior engineer. Answer briefly and precisely."},
            {"role": "user", "content": PROSE * 2},
            {"role": "assistant", "content": PROSE[:300]},
            {"role": "user", "content": PROSE[:250]},
            {"role": "user", "content": PROSE + extra},
        ],
    }


async def timed(engine: GuardrailEngine, gateway: Gateway, bodies: list[dict[str, Any]]) -> list[float]:
    samples = []
    gc.collect()
    for body in bodies:
        ctx = RequestContext("bench", "chat")
        ctx.body = body
        start = time.perf_counter_ns()
        await engine.check_input(ctx, gateway, RequestState())
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def summary(samples: list[float]) -> str:
    samples = sorted(samples)
    p50 = statistics.median(samples)
    p99 = samples[int(len(samples) * 0.99) - 1]
    return f"median {p50:.1f} us, mean {statistics.fmean(samples):.1f} us, p99 {p99:.1f} us"


async def main(iterations: int) -> None:
    with_secrets = importlib.util.find_spec("runtime.guardrails.detectors.secrets") is not None
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp)
        config_doc = {
            "providers": {
                "openai": {"keys": [{"name": "k", "value": "sk-bench-not-a-key", "models": [], "weight": 1}]}
            },
            "guardrails_config": issue_config(with_secrets),
        }
        (app / "config.json").write_text(json.dumps(config_doc))
        config = load_gateway_config(app)
    gateway = Gateway(config, Hooks([]))
    engine = GuardrailEngine(config.guardrails)
    size = len(json.dumps(chat_body()))
    clean = [json.loads(json.dumps(chat_body())) for _ in range(iterations)]  # fresh strings, as parsed
    await timed(engine, gateway, clean[: iterations // 10])  # warm-up (imports, memo, caches)
    clean = [json.loads(json.dumps(chat_body())) for _ in range(iterations)]  # fresh strings, as parsed
    what = "" if with_secrets else " (secrets detector not installed: a key-shape regex stands in for it)"
    print(f"config: the issue's example{what}")
    print(f"body: {size} bytes of JSON, 5 messages")
    print(f"input check, nothing found:  {summary(await timed(engine, gateway, clean))}")
    dirty = [json.loads(json.dumps(chat_body(" Reply to ops-team@example.com."))) for _ in range(iterations)]
    print(f"input check, one e-mail redacted: {summary(await timed(engine, gateway, dirty))}")


def gateway_overhead(requests: int) -> None:
    import http.client
    import os
    import subprocess
    import sys

    from bench import control
    from bench.mockproc import REPO_ROOT, MockProcess, child_env
    from bench.targets.bifrost import write_config

    body = json.dumps(chat_body()).encode()
    with MockProcess() as mock:
        for label, on in (("off", False), ("on", True)):
            with tempfile.TemporaryDirectory() as app:
                path = write_config(app, mock.origin, logging=True, profile=None)
                doc = json.loads(Path(path).read_text())
                if on:
                    secrets = importlib.util.find_spec("runtime.guardrails.detectors.secrets") is not None
                    doc["guardrails_config"] = issue_config(secrets)
                Path(path).write_text(json.dumps(doc))
                port = control.free_port()
                cmd = [
                    sys.executable,
                    "-m",
                    "bifrost_cli",
                    "serve",
                    "--port",
                    str(port),
                    "--app-dir",
                    app,
                    "--workers",
                    "1",
                    "--log-level",
                    "warning",
                ]
                env = {k: v for k, v in child_env().items() if not k.startswith("BIFROST_")}
                with open(os.path.join(app, "gateway.log"), "w") as log:
                    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
                try:
                    control.wait_ready(port, "/health", 60, proc)
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    overheads = []
                    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-x"}
                    for i in range(requests + requests // 10):
                        conn.request("POST", "/v1/chat/completions", body, headers)
                        response = conn.getresponse()
                        response.read()
                        if response.status != 200:
                            raise RuntimeError(f"gateway answered {response.status}")
                        if i >= requests // 10:  # the first tenth warms up
                            overheads.append(float(response.getheader("x-bf-overhead-us") or 0))
                    conn.close()
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
                print(f"gateway overhead, guardrails {label}, c=1: {summary(overheads)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--gateway", action="store_true", help="also measure two gateway processes, off vs on")
    parser.add_argument("--requests", type=int, default=1500)
    args = parser.parse_args()
    asyncio.run(main(args.iterations))
    if args.gateway:
        gateway_overhead(args.requests)

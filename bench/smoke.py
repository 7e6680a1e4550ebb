"""``python -m bench smoke``: every scenario for a few seconds at tiny rates, then the report.

Its job is to keep the suite from rotting (CI runs it), not to measure: it checks that every
scenario writes its JSON, that direct-to-mock and Bifrost answer every request at these rates, and
that the report renders.  LiteLLM joins only when its venv exists or BENCH_LITELLM=1 (which lets
the suite install it).  Results go to bench/results/raw/smoke/ (git-ignored), never over the real ones.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from bench import calibrate
from bench.report import write_report
from bench.scenarios import SCENARIOS
from bench.scenarios.common import RESULTS_DIR, log
from bench.targets import TargetUnavailable, litellm_env
from bench.targets.bifrost import serve_help

SMOKE_DIR = os.path.join(RESULTS_DIR, "raw", "smoke")
# Answering every request at a few RPS is the floor; these targets must meet it in smoke mode.
MUST_SUCCEED = ("direct", "bifrost", "bifrost-cache")


def smoke_targets(requested: str | None) -> tuple[list[str], dict[str, str]]:
    """Which targets smoke can run here, and why the others are left out."""
    names = [t.strip() for t in (requested or "direct,bifrost,litellm").split(",") if t.strip()]
    left_out: dict[str, str] = {}
    if "bifrost" in names:
        try:
            serve_help()
        except TargetUnavailable as exc:
            left_out["bifrost"] = str(exc)
    if "litellm" in names and not (litellm_env.installed() or os.environ.get("BENCH_LITELLM") == "1"):
        left_out["litellm"] = "no bench/.venvs/litellm and BENCH_LITELLM != 1"
    return [n for n in names if n not in left_out], left_out


def check(out_dir: str, scenarios: list[str]) -> list[str]:
    """Problems found in the smoke results (empty = good)."""
    problems = []
    for name in scenarios:
        path = os.path.join(out_dir, f"{name}.json")
        if not os.path.exists(path):
            problems.append(f"{name}: no {path}")
            continue
        with open(path) as fh:
            doc = json.load(fh)
        if not doc.get("cells"):
            problems.append(f"{name}: no cells measured (skipped: {doc.get('skipped')})")
        for c in doc.get("cells", []):
            if c.get("target") in MUST_SUCCEED and "unexpected_errors" in c:
                # The soak injects faults: those requests fail by design; every other one must succeed.
                if c["unexpected_errors"]:
                    problems.append(f"{name}: {c['target']} unexpected errors {c.get('unexpected_by_kind')}")
                continue
            if c.get("target") in MUST_SUCCEED and c.get("kind") is None and c.get("success_rate") != 1.0:
                problems.append(f"{name}: {c['target']} success {c.get('success_rate')} errors {c.get('errors')}")
    return problems


def run_smoke(args: argparse.Namespace) -> int:
    from bench.cli import make_context

    t0 = time.monotonic()
    if args.out == RESULTS_DIR:
        args.out = SMOKE_DIR
    names, left_out = smoke_targets(args.targets)
    for k, v in left_out.items():
        log(f"smoke: leaving out {k}: {v}")
    args.targets = ",".join(names)
    ctx = make_context(args, smoke=True)
    ctx.explicit_targets = False  # smoke keeps the scenarios' own target choices (no LiteLLM extras)
    only = {s.strip() for s in (args.only or "").split(",") if s.strip()}
    unknown = only - set(SCENARIOS) - {"calibrate"}
    if unknown:
        raise SystemExit(f"smoke --only: unknown scenario(s) {sorted(unknown)}")
    ran = []
    if not only or "calibrate" in only:
        calibrate.run(ctx)
        ran.append("calibrate")
    for name, fn in SCENARIOS.items():
        if only and name not in only:
            continue
        ctx.skipped = {}
        fn(ctx)
        ran.append(name)
    report = write_report(ctx.out_dir)
    problems = check(ctx.out_dir, ran)
    for p in problems:
        log(f"smoke PROBLEM: {p}")
    log(f"smoke: {len(ran)} scenarios, targets {names}, {time.monotonic() - t0:.0f} s; report {report}")
    return 1 if problems else 0

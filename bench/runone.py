"""``python -m bench run``: the published tool's interface, one target at one rate.

By default the suite starts everything itself: the mock on a free port and the target on
``--port`` (for ``direct``, the mock itself listens on ``--port``).  With ``--external`` the target is
assumed to be running already on ``--port`` (its RSS is read from whichever process listens there).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import psutil

from bench import control, targets
from bench.loadgen.driver import LoadSpec
from bench.loadgen.payloads import ENDPOINTS, request_body
from bench.mock_responses import MockSettings
from bench.mockproc import MockProcess
from bench.procmon import TreeMonitor
from bench.scenarios.common import Context, log, measure
from bench.stats import summarize
from bench.targets import Running, TargetUnavailable

_MODELS = {
    "bifrost": "openai/gpt-4o-mini",
    "bifrost-gov": "openai/gpt-4o-mini",
    "bifrost-nospin": "openai/gpt-4o-mini",
    "litellm": "gpt-4o-mini",
    "direct": "gpt-4o-mini",
}


def _listener_pid(port: int) -> int | None:
    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                return int(c.pid)
    except (psutil.Error, OSError):
        pass
    return None


def _external(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    if not control.port_open(args.port):
        raise SystemExit(f"bench run --external: nothing listens on 127.0.0.1:{args.port}")
    running = Running(
        name=args.target,
        port=args.port,
        model=args.model or _MODELS[args.target],
        pid=_listener_pid(args.port),
        notes=["external target (not started by the suite)"],
    )
    spec = _spec(ctx, running, args)
    from bench.loadgen.driver import run_load

    mon = TreeMonitor(running.pid).start()
    try:
        res = run_load(spec, monitor=mon)
    finally:
        mon.stop()
    out = summarize(res, with_timeline=True)
    out["resources"] = mon.summary(out["ok"])
    out["target"] = running.name
    return out


def _spec(ctx: Context, running: Running, args: argparse.Namespace) -> LoadSpec:
    ep = ENDPOINTS[args.endpoint]
    model = running.embedding_model if args.endpoint == "embeddings" else running.model
    return LoadSpec(
        port=running.port,
        body=request_body(ep, model, big=args.big_payload),
        endpoint=args.endpoint,
        mode="open",
        rate=args.rate,
        duration=args.duration,
        processes=ctx.processes,
        timeout=args.timeout,
        latency_hint_s=args.mock_latency_ms / 1000 + 0.005,
        cpus=ctx.layout.bench,
        headers={**running.headers, **_headers(args.header)},
    )


def _headers(given: list[str] | None) -> dict[str, str]:
    """`--header "Name: value"` options as a dict (an Authorization one replaces the default key)."""
    out: dict[str, str] = {}
    for item in given or ():
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise SystemExit(f"bench run: --header wants 'Name: value', got {item!r}")
        out[name.strip()] = value.strip()
    return out


def _managed(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    settings = MockSettings(latency_ms=args.mock_latency_ms)
    mock_port = args.port if args.target == "direct" else 0
    if control.port_open(args.port):
        raise SystemExit(
            f"bench run: 127.0.0.1:{args.port} is in use (pass --external to measure what "
            "listens there, or another --port)"
        )
    with MockProcess(settings, port=mock_port) as m:
        t = targets.make(
            args.target,
            mock_pid=m.pid,
            profile=args.profile,
            workers=ctx.workers,
            auto_install=ctx.auto_install,
            logging=not args.no_request_log,
        )
        try:
            running = t.start(m.origin, ctx.layout, port=None if args.target == "direct" else args.port)
        except TargetUnavailable as exc:
            raise SystemExit(f"bench run: {exc}") from None
        try:
            out, _ = measure(ctx, running, _spec(ctx, running, args), timeline=True, rss_series=True)
        finally:
            t.stop()
        out["mock_served"] = m.stats().get("served")
    return out


def run(ctx: Context, args: argparse.Namespace) -> int:
    out = _external(ctx, args) if args.external else _managed(ctx, args)
    out.update(target=args.target, rate=args.rate, mock_latency_ms=args.mock_latency_ms)
    lat = out["latency_ms"]
    print(
        f"{args.target}: sent {out['sent']}, ok {out['ok']} ({(out['success_rate'] or 0) * 100:.2f}%), "
        f"errors {out['errors'] or 'none'}, throughput {out['throughput_rps']}/s, latency ms "
        f"p50 {lat['p50']} p90 {lat['p90']} p99 {lat['p99']} p99.9 {lat['p99_9']} max {lat['max']}, "
        f"peak RSS {out['resources']['peak_rss_mb']} MB, CPU {out['resources']['cpu_ms_per_request']} ms/req"
    )
    path = args.output
    if path:
        # The published tool keeps one file keyed by provider name; runs of several targets accumulate.
        doc: dict[str, Any] = {}
        if os.path.exists(path):
            try:
                with open(path) as fh:
                    doc = json.load(fh)
            except ValueError:
                doc = {}
        doc[args.target] = out
        with open(path, "w") as fh:
            json.dump(doc, fh, indent=1)
        log(f"wrote {path}")
    return 0 if out["ok"] else 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", choices=sorted(targets.TARGETS), required=True)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--rate", type=float, default=500.0, help="requests per second (open loop)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    p.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="chat")
    p.add_argument("--big-payload", action="store_true", help="~10 KB prompt instead of a short one")
    p.add_argument("--mock-latency-ms", type=float, default=0.0)
    p.add_argument("--profile", choices=["cost", "speed", "auto"], default="cost", help="Bifrost profile")
    p.add_argument("--no-request-log", action="store_true", help="Bifrost: enable_logging false")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, seconds")
    p.add_argument("--model", default=None, help="--external: model name to send")
    p.add_argument(
        "--header",
        action="append",
        metavar="'NAME: VALUE'",
        help="a header sent with every request, repeatable (e.g. 'Authorization: Bearer sk-bf-...' for a virtual key)",
    )
    p.add_argument("--external", action="store_true", help="measure a target already listening on --port")
    p.add_argument("--output", default=None, help="JSON file, results keyed by target (accumulates)")


__all__ = ["add_arguments", "run"]

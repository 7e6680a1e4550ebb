"""``python -m bench``: scenarios, the published single-run interface, smoke mode and the report.

python -m bench run --target bifrost --port 8080 --rate 1000 --duration 60
python -m bench medium | xlarge | overhead | frontier | streams | soak | breakdown | logging
python -m bench soak --duration 3600 --faults 0.10   # the one-hour soak with 10 % injected faults
python -m bench calibrate          # the mock and the load generator alone
python -m bench all                # every scenario (about 40 minutes), then the report
python -m bench smoke              # every scenario for a few seconds at tiny rates
python -m bench report             # bench/results/REPORT.md + charts from the results JSON
python -m bench mock --port 9000   # the mock provider on its own
"""

from __future__ import annotations

import argparse
import sys

from bench import calibrate, pinning, runone
from bench.mock_provider import raise_fd_limit
from bench.scenarios import SCENARIOS, TAKES_RATE
from bench.scenarios.common import RESULTS_DIR, Context, log


def _common(p: argparse.ArgumentParser, *, duration: bool = True) -> None:
    p.add_argument(
        "--targets",
        default=None,
        help=(
            "comma list of direct,bifrost,litellm,portkey (default: all the scenario uses); scenarios that have"
            " them also take bifrost-gov, bifrost-nospin, floor-aiohttp, floor-raw"
        ),
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin gateway / bench to separate CPUs")
    p.add_argument("--processes", type=int, default=None, help="load generator processes (default: bench CPUs)")
    p.add_argument("--workers", type=int, default=1, help="gateway worker processes (both gateways)")
    if duration:  # `run` has its own --duration (the published tool's)
        p.add_argument("--duration", type=float, default=None, help="override each cell's duration, seconds")
    p.add_argument("--out", default=RESULTS_DIR, help="results directory")
    p.add_argument("--no-install", action="store_true", help="do not install LiteLLM / Portkey; skip them if absent")
    p.add_argument("--smoke", action="store_true", help="a few seconds at tiny rates (what CI runs)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="one target at one rate (the published tool's interface)")
    runone.add_arguments(p)
    _common(p, duration=False)
    for name in (*SCENARIOS, "calibrate"):
        p = sub.add_parser(name, help=f"scenario {name}")
        _common(p)
        if name in TAKES_RATE:
            p.add_argument("--rate", type=float, default=None, help="override the scenario's rate")
        if name == "overhead":
            p.add_argument(
                "--runs",
                type=int,
                default=1,
                help="consecutive rounds of direct and Bifrost (peers in the first only); reports each and the spread",
            )
        if name == "soak":
            p.add_argument(
                "--faults",
                type=float,
                default=None,
                help="share of requests given an injected fault (e.g. 0.10); mixes streamed and plain requests",
            )
    p = sub.add_parser("all", help="every scenario, then the report")
    _common(p)
    p.add_argument("--skip", default="", help="comma list of scenarios to leave out (e.g. soak,calibrate)")
    p = sub.add_parser("smoke", help="every scenario for a few seconds at tiny rates, then the report")
    _common(p)
    p.add_argument("--only", default=None, help="comma list of scenarios (default: all)")
    p = sub.add_parser("report", help="write REPORT.md and charts from the results JSON")
    p.add_argument("--out", default=RESULTS_DIR, help="results directory to read and write")
    sub.add_parser("install-litellm", help="pip install litellm[proxy] into bench/.venvs/litellm")
    sub.add_parser("install-portkey", help="npm install @portkey-ai/gateway (pinned tree) into bench/.venvs/portkey")
    sub.add_parser("mock", help="run the mock provider (see python -m bench.mock_provider --help)", add_help=False)
    return parser


def make_context(args: argparse.Namespace, *, smoke: bool = False) -> Context:
    layout = pinning.detect(pin=not args.no_pin)
    pinning.pin_self(layout)  # the mock and the load generator inherit the bench CPUs
    raise_fd_limit()  # children (gateways included) inherit the higher open-files limit
    explicit = args.targets is not None
    names = [t.strip() for t in (args.targets or "direct,bifrost,litellm,portkey").split(",") if t.strip()]
    processes = args.processes or (len(layout.bench) if layout.bench else 1)
    return Context(
        layout=layout,
        out_dir=args.out,
        smoke=smoke or args.smoke,
        targets=names,
        explicit_targets=explicit,
        processes=processes,
        auto_install=not args.no_install,
        workers=args.workers,
        duration=None if args.command == "run" else args.duration,
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "mock":
        from bench import mock_provider

        return mock_provider.main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "report":
        from bench.report import write_report

        print(write_report(args.out))
        return 0
    if args.command == "install-litellm":
        from bench.targets import litellm_env

        print(litellm_env.ensure(auto_install=True))
        return 0
    if args.command == "install-portkey":
        from bench.targets import portkey_env

        print(portkey_env.ensure(auto_install=True))
        return 0
    if args.command == "smoke":
        from bench.smoke import run_smoke

        return run_smoke(args)
    ctx = make_context(args)
    log(f"layout: {ctx.layout.describe()}; load generator processes: {ctx.processes}")
    if args.command == "run":
        return runone.run(ctx, args)
    if args.command == "calibrate":
        calibrate.run(ctx)
        return 0
    if args.command == "all":
        skip = {s.strip() for s in args.skip.split(",") if s.strip()}
        if "calibrate" not in skip:
            calibrate.run(ctx)
        for name, fn in SCENARIOS.items():
            if name not in skip:
                fn(ctx)
        from bench.report import write_report

        print(write_report(ctx.out_dir))
        return 0
    fn = SCENARIOS[args.command]
    rate = getattr(args, "rate", None)
    if args.command == "soak":
        SCENARIOS["soak"](ctx, rate=rate, faults=args.faults)
        return 0
    if args.command == "overhead":
        SCENARIOS["overhead"](ctx, runs=max(1, args.runs))
        return 0
    fn(ctx, rate=rate) if args.command in TAKES_RATE else fn(ctx)
    return 0


__all__ = ["build_parser", "main"]

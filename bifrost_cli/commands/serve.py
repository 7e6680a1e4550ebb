"""`bifrost serve` (also bare `bifrost`): build the config and hand it to runtime.run."""

from __future__ import annotations

import sys
from pathlib import Path

import click

import runtime
from bifrost_cli import console
from bifrost_cli.commands.config import print_warnings
from bifrost_cli.profiles import PROFILE_CHOICES
from bifrost_cli.startup import build_startup
from runtime.config.load import ConfigError
from runtime.config.model import GatewayConfig
from runtime.listen import StartError

LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)


def serve_options(f):  # type: ignore[no-untyped-def]
    """The serve options, shared by the root group (bare `bifrost`) and `bifrost serve`."""
    options = [
        click.option(
            "--host", envvar="BIFROST_HOST", default="127.0.0.1", show_default=True, help="Address to listen on."
        ),
        click.option(
            "--port",
            envvar="BIFROST_PORT",
            type=click.IntRange(0, 65535),
            default=8080,
            show_default=True,
            help="Port to listen on.",
        ),
        click.option(
            "--app-dir",
            envvar="BIFROST_APP_DIR",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Holds config.json and logs.db [default: the user config dir].",
        ),
        click.option("--log-level", envvar="BIFROST_LOG_LEVEL", type=LOG_LEVELS, default="info", show_default=True),
        click.option(
            "--workers",
            envvar="BIFROST_WORKERS",
            type=click.IntRange(1, 256),
            default=None,
            help="Worker processes sharing the port (SO_REUSEPORT) [default: the profile's]. They start by "
            "fork on Linux, by spawn elsewhere; env BIFROST_MP_START=spawn|fork|forkserver forces one.",
        ),
        # No click envvar: BIFROST_PROFILE is read by resolve_profile so the banner can say where
        # the profile came from (flag > env > config.json > auto).
        click.option(
            "--profile",
            type=click.Choice(PROFILE_CHOICES, case_sensitive=False),
            default=None,
            help="Tuning profile for this run [env BIFROST_PROFILE; default: config.json's "
            '"profile", else auto]. See `bifrost tune`.',
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def run_serve(
    host: str, port: int, app_dir: Path | None, log_level: str, workers: int | None, profile: str | None = None
) -> None:
    try:
        startup = build_startup(
            app_dir, host=host, port=port, log_level=log_level.lower(), workers=workers, profile_flag=profile
        )
    except ConfigError as exc:
        console.error(f"invalid configuration: {exc}")
        sys.exit(2)
    rows = startup.banner_rows()

    def on_listening(bound: GatewayConfig) -> None:
        # The banner is printed once the address is bound, so it shows the real port (--port 0);
        # the config's warnings follow it so they are the last thing a person reads at start.
        console.banner(bound, rows)
        print_warnings(startup.config)

    try:
        code = runtime.run(startup.config, on_listening=on_listening)
    except StartError as exc:  # port in use, permission, unknown host: one line, no traceback
        console.error(str(exc))
        sys.exit(1)
    sys.exit(code)


@click.command("serve")
@serve_options
def serve(host: str, port: int, app_dir: Path | None, log_level: str, workers: int | None, profile: str | None) -> None:
    """Start the gateway (the default command)."""
    run_serve(host, port, app_dir, log_level, workers, profile)

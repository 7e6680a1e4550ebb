"""`bifrost serve` (also bare `bifrost`): build the config and hand it to runtime.run."""

from __future__ import annotations

import sys
from pathlib import Path

import click

import runtime
from bifrost_cli import console
from runtime.config.load import ConfigError, load_gateway_config
from runtime.paths import default_app_dir

LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)


def serve_options(f):  # type: ignore[no-untyped-def]
    """The serve options, shared by the root group (bare `bifrost`) and `bifrost serve`."""
    options = [
        click.option("--host", envvar="BIFROST_HOST", default="127.0.0.1", show_default=True,
                     help="Address to listen on."),
        click.option("--port", envvar="BIFROST_PORT", type=click.IntRange(0, 65535), default=8080,
                     show_default=True, help="Port to listen on."),
        click.option("--app-dir", envvar="BIFROST_APP_DIR", type=click.Path(file_okay=False, path_type=Path),
                     default=None, help="Holds config.json and logs.db [default: the user config dir]."),
        click.option("--log-level", envvar="BIFROST_LOG_LEVEL", type=LOG_LEVELS, default="info",
                     show_default=True),
        click.option("--workers", envvar="BIFROST_WORKERS", type=click.IntRange(1, 256), default=None,
                     help="Worker processes sharing the port (SO_REUSEPORT) [default: 1]."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def run_serve(host: str, port: int, app_dir: Path | None, log_level: str, workers: int | None) -> None:
    app_dir = (app_dir or default_app_dir()).expanduser()
    try:
        config = load_gateway_config(app_dir, host=host, port=port, log_level=log_level.lower(),
                                     workers=workers or 1)
    except ConfigError as exc:
        console.error(f"invalid configuration: {exc}")
        sys.exit(2)
    console.banner(config)
    sys.exit(runtime.run(config))


@click.command("serve")
@serve_options
def serve(host: str, port: int, app_dir: Path | None, log_level: str, workers: int | None) -> None:
    """Start the gateway (the default command)."""
    run_serve(host, port, app_dir, log_level, workers)

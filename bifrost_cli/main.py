"""The `bifrost` command group. Bare `bifrost` serves, as `bifrost serve` does."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import click

import runtime
from bifrost_cli.commands.config import config
from bifrost_cli.commands.migrate import migrate
from bifrost_cli.commands.serve import run_serve, serve, serve_options
from bifrost_cli.commands.tune import tune


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(runtime.__version__, "--version", "-V", prog_name="bifrost")
@serve_options
@click.pass_context
def cli(
    ctx: click.Context,
    host: str,
    port: int,
    app_dir: Path | None,
    log_level: str,
    workers: int | None,
    profile: str | None,
) -> None:
    """Bifrost: an OpenAI-compatible LLM gateway. With no command, starts the gateway."""
    if ctx.invoked_subcommand is None:
        run_serve(host, port, app_dir, log_level, workers, profile)


cli.add_command(serve)
cli.add_command(tune)
cli.add_command(config)
cli.add_command(migrate)  # embedded stores -> PostgreSQL (issue 14)


def main() -> None:
    # A frozen (PyInstaller) build re-runs this entry point in each spawned worker: hand it to
    # multiprocessing instead of starting a second CLI. A no-op everywhere else.
    multiprocessing.freeze_support()
    cli(prog_name="bifrost")

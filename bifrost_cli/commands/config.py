"""`bifrost config path|show|validate`: where config.json is, what a start would use, whether it loads."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from bifrost_cli import console
from bifrost_cli.profiles import PROFILE_CHOICES
from bifrost_cli.startup import Startup, app_dir_or_default, build_startup
from runtime.config.load import ConfigError
from runtime.config.model import GatewayConfig, KeyConfig

_SECRET_HEADER_WORDS = ("auth", "key", "token", "secret", "cookie")

app_dir_option = click.option(
    "--app-dir",
    envvar="BIFROST_APP_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Holds config.json [default: the user config dir].",
)


def _mask(value: object) -> str:
    text = str(value)
    return "****" if len(text) < 12 else f"{text[:4]}…{text[-2:]}"


# Fields of a key's credential blocks that are not secret (shown as they are); every other text is masked.
_PLAIN_KEY_FIELDS = ("region", "project_id", "project_number", "api_version", "anthropic_version", "anthropic_beta")


def _mask_tree(value: Any, field: str = "") -> Any:
    """A key's extra fields with every secret masked, however deep (credential blocks are nested)."""
    if isinstance(value, Mapping):
        if field == "deployments":
            return {str(k): v for k, v in value.items()}
        return {str(k): _mask_tree(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask_tree(v, field) for v in value]
    if isinstance(value, str) and field not in _PLAIN_KEY_FIELDS:
        return _mask(value)
    return value


def _plain(value: Any, field: str = "") -> Any:
    """JSON-ready copy of the config; key material and auth-like headers masked."""
    if isinstance(value, KeyConfig):
        data = {f.name: _plain(getattr(value, f.name), f.name) for f in dataclasses.fields(value)}
        data["value"] = _mask(value.value)
        data["extra"] = _mask_tree(value.extra)
        return data
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name), f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        if field == "extra_headers":
            return {k: _mask(v) if any(w in k.lower() for w in _SECRET_HEADER_WORDS) else v for k, v in value.items()}
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _effective(s: Startup) -> dict[str, Any]:
    c = s.config
    return {
        "config_path": str(c.config_path),
        "config_file_exists": c.config_path.exists(),
        "instance": _plain(s.instance),
        "profile": {"name": s.profile.name, "requested": s.profile.requested, "source": s.profile.source},
        "workers": c.workers,
        "tuning": _plain(c.tuning),
        "client": _plain(c.client),
        "providers": _plain(c.providers),
    }


def print_warnings(config: GatewayConfig, *, err: bool = True) -> None:
    """One line per accepted-but-ineffective field (Go Bifrost settings we do not implement, skipped keys)."""
    for warning in config.warnings:
        click.echo(f"warning: {warning}", err=err)


def _load(app_dir: Path | None, profile: str | None) -> Startup:
    try:
        return build_startup(app_dir, profile_flag=profile)
    except ConfigError as exc:
        console.error(f"invalid configuration: {exc}")
        sys.exit(2)


@click.group("config")
def config() -> None:
    """Where config.json is, what a start would use, and whether it is valid."""


@config.command("path")
@app_dir_option
def path(app_dir: Path | None) -> None:
    """Print the path of config.json (whether or not it exists)."""
    click.echo(app_dir_or_default(app_dir) / "config.json")


@config.command("show")
@app_dir_option
@click.option("--profile", type=click.Choice(PROFILE_CHOICES, case_sensitive=False), default=None)
def show(app_dir: Path | None, profile: str | None) -> None:
    """Print, as JSON, the configuration a start would use: file + environment + profile (keys masked)."""
    click.echo(json.dumps(_effective(_load(app_dir, profile)), indent=2, ensure_ascii=False))


@config.command("validate")
@app_dir_option
def validate(app_dir: Path | None) -> None:
    """Load config.json as a start would; exit 0 if it is usable, 2 (with the reason) if not."""
    s = _load(app_dir, None)
    path = s.config.config_path
    providers = ", ".join(sorted(s.config.providers)) or "none"
    if path.exists():
        click.echo(f"ok: {path} is valid (providers: {providers}; profile: {s.profile.describe()})")
    else:
        click.echo(f"ok: no {path}; a start takes providers from the environment (providers: {providers})")
    print_warnings(s.config, err=False)

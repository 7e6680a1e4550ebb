"""`bifrost tune`: show the detected instance and the profiles; `--profile X` saves X in config.json."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from bifrost_cli import console, startup
from bifrost_cli.profiles import (
    AUTO,
    CONFIG_KEY,
    ENV_VAR,
    KNOB_HELP,
    PROFILE_CHOICES,
    PROFILES,
    Profile,
    resolve_profile,
    saved_profile,
    select_profile,
)
from bifrost_cli.sizing import InstanceInfo
from bifrost_cli.startup import app_dir_or_default, resolve_for
from runtime.config.load import ConfigError, read_config_file

out = Console(highlight=False)  # the table is this command's output: stdout


def _value(profile: Profile, knob: str, instance: InstanceInfo) -> str:
    value = getattr(profile, knob)
    if knob == "workers" and value == 0:
        return f"per CPU: {instance.usable_cpus}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:g}"


def _show(app_dir: Path) -> None:
    instance, effective, raw = resolve_for(app_dir, None)
    saved = saved_profile(raw)
    recommended = select_profile(instance)

    facts = Table(title="Instance and profile", show_header=False, title_justify="left")
    facts.add_column(style="bold cyan")
    facts.add_column()
    facts.add_row("CPUs", f"{instance.cpus:g}  ({instance.cpu_source})")
    memory = "unknown" if instance.memory_gib is None else f"{instance.memory_gib:.1f} GiB"
    facts.add_row("memory", f"{memory}  ({instance.memory_source})")
    facts.add_row("recommended", f"{recommended}  (what auto picks here: {PROFILES[recommended].instance_class})")
    facts.add_row("saved", f"{saved}  (in {app_dir / 'config.json'})" if saved else "none (auto)")
    facts.add_row("in effect", effective.describe())
    out.print(facts)

    knobs = Table(
        title="What each profile sets (per worker)",
        title_justify="left",
        caption="* in effect",
        caption_justify="left",
    )
    knobs.add_column("knob", style="bold", no_wrap=True)
    for profile in PROFILES.values():
        chosen = profile.name == effective.name
        knobs.add_column(profile.name + (" *" if chosen else ""), justify="right", style="green" if chosen else None)
    knobs.add_column("controls", style="dim")
    for knob, help_text in KNOB_HELP.items():
        knobs.add_row(knob, *(_value(p, knob, instance) for p in PROFILES.values()), help_text)
    out.print(knobs)
    out.print(
        "Save one with [bold]bifrost tune --profile cost|speed|auto[/]; override one run with "
        f"[bold]bifrost --profile …[/] or {ENV_VAR}. A provider's own concurrency_and_buffer_size and the "
        "client block's drop_excess_requests / initial_pool_size in config.json always win."
    )


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` in one step, so a crash mid-write never leaves a half-written config.json."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600  # it may hold secrets
    fd, tmp = tempfile.mkstemp(prefix=".config.", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save(app_dir: Path, name: str) -> None:
    instance = startup.detect_instance()
    path = app_dir / "config.json"
    data: dict[str, Any] = dict(read_config_file(path) or {})
    before_saved = data.get(CONFIG_KEY)
    try:  # compare saved against saved: the environment is not what this command changes
        before = resolve_profile(instance, None, data, environ={}).profile
    except ValueError:  # an invalid saved value is what this command is here to fix
        before = PROFILES[select_profile(instance)]
    after = resolve_profile(instance, name, None, environ={}).profile

    if before_saved == name:
        out.print(f"profile is already [bold]{name}[/] in {path}; nothing changed")
    else:
        # A new key goes first so a person opening the file sees it; an existing one keeps its place.
        data = {**data, CONFIG_KEY: name} if CONFIG_KEY in data else {CONFIG_KEY: name, **data}
        _write_json_atomically(path, data)
        out.print(f"saved profile: [bold]{before_saved or 'none (auto)'}[/] -> [bold]{name}[/] in {path}")
        out.print("a running gateway keeps its profile; it takes effect at the next start")

    changes = Table(title=f"Effect here: {before.name} -> {after.name}", title_justify="left")
    changes.add_column("knob", no_wrap=True)
    changes.add_column("before", justify="right")
    changes.add_column("after", justify="right")
    for knob in KNOB_HELP:
        old, new = _value(before, knob, instance), _value(after, knob, instance)
        if old != new:
            changes.add_row(knob, old, f"[bold]{new}[/]")
    if changes.row_count:
        out.print(changes)
    else:
        out.print(f"every knob stays the same ({after.name}{' via auto' if name == AUTO else ''})")

    providers = data.get("providers")
    lanes = "concurrency_and_buffer_size"
    explicit = (
        sorted(n for n, p in providers.items() if isinstance(p, dict) and lanes in p)
        if isinstance(providers, dict)
        else []
    )
    if explicit:
        out.print(f"providers keeping their own concurrency_and_buffer_size: {', '.join(explicit)}")
    if os.environ.get(ENV_VAR):
        out.print(f"[yellow]note:[/] {ENV_VAR}={os.environ[ENV_VAR]} is set and beats the saved profile in this shell")


@click.command("tune")
@click.option(
    "--profile",
    type=click.Choice(PROFILE_CHOICES, case_sensitive=False),
    default=None,
    help="Save this profile in config.json (no flag: show instance and profiles).",
)
@click.option(
    "--app-dir",
    envvar="BIFROST_APP_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Holds config.json [default: the user config dir].",
)
def tune(profile: str | None, app_dir: Path | None) -> None:
    """Show the detected instance and tuning profiles, or save one (--profile)."""
    directory = app_dir_or_default(app_dir)
    try:
        if profile is None:
            _show(directory)
        else:
            _save(directory, profile.lower())
    except ConfigError as exc:
        console.error(f"invalid configuration: {exc}")
        sys.exit(2)

"""`bifrost tune`: show the detected instance and the profiles; `--profile X` saves X in config.json;
`--rps N --latency S` sizes the provider lanes for a target load (`--write` saves them)."""

from __future__ import annotations

import json
import math
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
from bifrost_cli.sizing import BUFFER_FACTOR, InstanceInfo, RpsSizing
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


LANES = "concurrency_and_buffer_size"


def _mib(n: int) -> str:
    return f"{n / 1024**2:,.1f} MiB"


def _providers(raw: dict[str, Any] | None) -> list[str]:
    providers = (raw or {}).get("providers")
    if not isinstance(providers, dict):
        return []
    return [name for name, p in providers.items() if isinstance(p, dict)]


def _rps(app_dir: Path, rps: int, latency: float, write: bool) -> None:
    instance, effective, raw = resolve_for(app_dir, None)
    names = _providers(raw)
    sizing = RpsSizing(rps=rps, latency_s=latency, providers=max(1, len(names)))
    profile = effective.profile
    workers = profile.workers_for(instance)

    table = Table(
        title=f"Sized for {rps:,} requests/s at {latency:g} s average upstream latency",
        title_justify="left",
        caption=(
            f"buffer_size = rps x latency x {BUFFER_FACTOR} (Go Bifrost's published rule); "
            "concurrency = rps x latency, rounded up. Figures are per worker process."
        ),
        caption_justify="left",
    )
    table.add_column("knob", style="bold", no_wrap=True)
    table.add_column("value", justify="right", style="green", no_wrap=True)
    table.add_column(f"profile {profile.name}", justify="right", style="dim", no_wrap=True)
    table.add_column("where", style="dim")
    rows = (
        ("concurrency", sizing.concurrency, profile.concurrency, "config.json lane"),
        ("buffer_size", sizing.buffer_size, profile.buffer_size, "config.json lane"),
        ("initial_pool_size", sizing.initial_pool_size, profile.initial_pool_size, "config.json client"),
        (
            "connection_pool_limit_per_host",
            sizing.connection_pool_limit_per_host,
            profile.connection_pool_limit_per_host,
            "profile only",
        ),
        (
            "connection_pool_limit",
            sizing.connection_pool_limit,
            profile.connection_pool_limit,
            "profile only",
        ),
    )
    for knob, value, current, where in rows:
        table.add_row(knob, f"{value:,}", f"{current:,}", where)
    out.print(table)

    memory = Table(
        title=f"Memory when every slot is full ({sizing.providers} lane(s), estimates in bifrost_cli/sizing.py)",
        title_justify="left",
    )
    memory.add_column("part", style="bold", no_wrap=True)
    memory.add_column("per worker", justify="right")
    memory.add_column(f"x {workers} worker(s)", justify="right")
    parts = sizing.memory_bytes()
    for part, size in parts.items():
        memory.add_row(part, _mib(size), _mib(size * workers))
    total = sum(parts.values())
    memory.add_row("total", f"[bold]{_mib(total)}[/]", f"[bold]{_mib(total * workers)}[/]")
    out.print(memory)
    if instance.memory_bytes is not None and total * workers > instance.memory_bytes // 2:
        out.print(
            f"[yellow]note:[/] that is more than half of this instance's {instance.memory_gib:.1f} GiB; "
            "turn on client.drop_excess_requests or lower the target"
        )
    if sizing.connection_pool_limit_per_host > profile.connection_pool_limit_per_host:
        out.print(
            f"[yellow]note:[/] the {profile.name} profile caps sockets per host at "
            f"{profile.connection_pool_limit_per_host:,}: lane permits above it wait for a socket"
        )

    if not write:
        out.print("Write these to config.json with [bold]--write[/].")
        return
    if not names:
        console.error(f"no providers in {app_dir / 'config.json'}: add one, then run this again (nothing written)")
        sys.exit(2)
    _write_rps(app_dir / "config.json", raw or {}, names, sizing)


def _write_rps(path: Path, raw: dict[str, Any], names: list[str], sizing: RpsSizing) -> None:
    data = dict(raw)
    providers = dict(data["providers"])
    for name in names:
        providers[name] = {
            **providers[name],
            LANES: {"concurrency": sizing.concurrency, "buffer_size": sizing.buffer_size},
        }
    data["providers"] = providers
    client = data.get("client")
    data["client"] = {**(client if isinstance(client, dict) else {}), "initial_pool_size": sizing.initial_pool_size}
    _write_json_atomically(path, data)
    out.print(
        f"wrote {LANES} {{concurrency: {sizing.concurrency:,}, buffer_size: {sizing.buffer_size:,}}} for "
        f"{', '.join(names)} and client.initial_pool_size {sizing.initial_pool_size:,} to {path}"
    )
    out.print("a running gateway keeps its lanes; they take effect at the next start")


def _latency(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise click.BadParameter("must be a finite number of seconds above 0 (e.g. 0.5)", ctx, param)
    return value


@click.command("tune")
@click.option(
    "--profile",
    type=click.Choice(PROFILE_CHOICES, case_sensitive=False),
    default=None,
    help="Save this profile in config.json (no flag: show instance and profiles).",
)
@click.option(
    "--rps",
    type=click.IntRange(min=1),
    default=None,
    help="Target requests/s: size each provider lane for it (with --latency; not with --profile).",
)
@click.option(
    "--latency",
    type=float,
    callback=_latency,
    default=None,
    help=f"Average upstream latency in seconds (float). buffer_size = rps x latency x {BUFFER_FACTOR}, "
    "concurrency = rps x latency.",
)
@click.option("--write", is_flag=True, help="With --rps: write the sized lanes into config.json.")
@click.option(
    "--app-dir",
    envvar="BIFROST_APP_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Holds config.json [default: the user config dir].",
)
def tune(profile: str | None, rps: int | None, latency: float | None, write: bool, app_dir: Path | None) -> None:
    """Show the detected instance and tuning profiles, save one (--profile), or size the lanes for a
    target load (--rps N --latency S [--write])."""
    if (rps is None) != (latency is None):
        raise click.UsageError("--rps and --latency go together")
    if rps is not None and profile is not None:
        raise click.UsageError(
            "--rps and --profile are separate steps: save the profile first, then size the lanes with --rps"
        )
    if write and rps is None:
        raise click.UsageError("--write needs --rps and --latency")
    directory = app_dir_or_default(app_dir)
    try:
        if rps is not None and latency is not None:
            _rps(directory, rps, latency, write)
        elif profile is None:
            _show(directory)
        else:
            _save(directory, profile.lower())
    except ConfigError as exc:
        console.error(f"invalid configuration: {exc}")
        sys.exit(2)

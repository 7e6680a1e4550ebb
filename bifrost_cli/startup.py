"""From flags + environment + config.json + the detected instance to one GatewayConfig.

Shared by `serve` (which runs it), `config show|validate` (which print it) and `tune` (which shows
the profile part), so all of them agree on what a start would use.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bifrost_cli.profiles import ResolvedProfile, resolve_profile
from bifrost_cli.sizing import InstanceInfo, detect_instance
from runtime.config.load import ConfigError, load_gateway_config, read_config_file
from runtime.config.model import GatewayConfig
from runtime.paths import default_app_dir


@dataclass(frozen=True, slots=True)
class Startup:
    config: GatewayConfig
    instance: InstanceInfo
    profile: ResolvedProfile

    def banner_rows(self) -> list[tuple[str, str]]:
        i = self.instance
        return [
            ("instance", f"{i.describe()}  ({i.cpu_source}; {i.memory_source})"),
            ("profile", self.profile.describe()),
        ]


IDLE_SPIN_ENV = "BIFROST_IDLE_SPIN_US"


def idle_spin_us(profile_value: int, instance: InstanceInfo, environ: Mapping[str, str]) -> int:
    """The idle spin in effect: BIFROST_IDLE_SPIN_US (a whole number of µs, 0 = off) beats the profile; without
    it, a cgroup CPU quota turns the spin off (spinning spends the quota; running out of it stalls every
    request until the next period).

    Raises ConfigError for a value that is not a whole number from 0 to 10,000."""
    raw = environ.get(IDLE_SPIN_ENV, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) > 10_000:
            raise ConfigError(IDLE_SPIN_ENV, f"must be a whole number of microseconds from 0 to 10000, got {raw!r}")
        return int(raw)
    return 0 if instance.cpu_quota is not None else profile_value


def app_dir_or_default(app_dir: Path | None) -> Path:
    return (app_dir or default_app_dir()).expanduser()


def resolve_for(
    app_dir: Path, profile_flag: str | None, environ: Mapping[str, str] | None = None
) -> tuple[InstanceInfo, ResolvedProfile, dict[str, Any] | None]:
    """The instance, the profile in effect and the parsed config.json (None if there is none).

    Raises ConfigError for unreadable JSON or an unknown profile name (naming where it came from).
    """
    instance = detect_instance()
    # load_gateway_config reads the file again; the profile must be known before it builds providers,
    # and a second read of a small JSON file once at start-up is cheaper than a second loader API.
    raw = read_config_file(app_dir / "config.json")
    try:
        resolved = resolve_profile(instance, profile_flag, raw, environ)
    except ValueError as exc:
        raise ConfigError("profile", str(exc)) from None
    return instance, resolved, raw


def build_startup(
    app_dir: Path | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_level: str = "info",
    workers: int | None = None,
    profile_flag: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Startup:
    """Precedence for every knob: explicit flag/env > config.json > profile > built-in default.

    `--workers` beats the profile's worker count; a provider's `concurrency_and_buffer_size` and the
    `client` block's `drop_excess_requests`/`initial_pool_size` beat the profile's values.
    """
    env = os.environ if environ is None else environ
    directory = app_dir_or_default(app_dir)
    instance, resolved, _ = resolve_for(directory, profile_flag, env)
    profile = resolved.profile
    config = load_gateway_config(
        directory,
        host=host,
        port=port,
        log_level=log_level,
        workers=workers or profile.workers_for(instance),
        tuning=dataclasses.replace(profile.tuning(), idle_spin_us=idle_spin_us(profile.idle_spin_us, instance, env)),
        client_defaults=profile.client_defaults(),
        environ=env,
    )
    return Startup(config=config, instance=instance, profile=resolved)

"""Tuning profiles: every performance knob of the runtime, as one table.

The two named profiles keep the figures of the published Bifrost benchmark (``cost`` = the
t3.medium class, ``speed`` = the t3.xlarge class); ``auto`` is not a profile but a rule
(:func:`select_profile`) that picks one of them from the detected instance.

What the knobs mean in *this* runtime (Python, one event loop per worker process):

- ``workers`` - gateway processes sharing the listen socket (SO_REUSEPORT). Each has its own event
  loop, ClientSession, lanes and log buffer, so every per-worker figure below is multiplied by it.
  ``0`` means one per usable CPU.
- ``concurrency`` - per provider and worker: upstream requests in flight at once (the lane's
  permits). This is what "concurrency" means in Go Bifrost's ``concurrency_and_buffer_size``.
- ``buffer_size`` - per provider and worker: requests allowed to *wait* for a lane permit (the
  lane's FIFO wait queue). It is a hard bound only with ``drop_excess_requests``: a request that
  finds it full gets 429 ``queue_full`` at once. Without it the request waits anyway, bounded by
  its request timeout, as Go Bifrost's blocking channel send does.
- ``initial_pool_size`` - records the request-log buffer holds between writer flushes before it
  drops (and counts) new ones; the writer pre-sizes for it. In Go Bifrost it pre-warms sync.Pools
  of request objects; Python has no such pool, and the log buffer is the one memory pool that
  scales with load, so the benchmark figure is kept for it.
- ``connection_pool_limit`` / ``connection_pool_limit_per_host`` - the worker's upstream HTTP
  client (runtime/net/client.py): open upstream sockets in total and per origin (scheme, host,
  port). Per host matches ``concurrency`` so a lane permit never waits for a socket.
- ``keepalive_timeout_s`` - how long an idle upstream socket is kept in the pool for reuse. Longer
  keeps TLS handshakes off the request path but holds sockets and their buffers.
- ``listen_backlog`` - the listen(2) backlog of the server socket: connections the kernel queues
  before the gateway accepts them (bursts of new clients).
- ``log_batch_size`` / ``log_flush_interval_ms`` - the request-log writer commits when it has this
  many records or when this much time has passed, whichever comes first.
- ``drop_excess_requests`` - shed load (429) instead of queueing beyond ``buffer_size``.
- ``idle_spin_us`` - the longest time the event loop keeps polling after traffic instead of sleeping
  (runtime/http/idlespin.py): an idle core that halts between the events of one request costs a
  wake-up and cold caches each time. Adaptive (sparse traffic spins not at all); off under a cgroup
  CPU quota, where spinning would spend the quota; ``BIFROST_IDLE_SPIN_US`` overrides it.

``cost`` trades latency under bursts for memory: one worker, smaller queues, fewer idle sockets,
load shedding. ``speed`` spends memory for latency: a worker per CPU, deeper queues, warm sockets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from bifrost_cli.sizing import InstanceInfo
from runtime.config.model import ClientConfig, Tuning

__all__ = [
    "AUTO",
    "KNOB_HELP",
    "PROFILES",
    "PROFILE_CHOICES",
    "Profile",
    "ResolvedProfile",
    "resolve_profile",
    "saved_profile",
    "select_profile",
]

AUTO = "auto"
ENV_VAR = "BIFROST_PROFILE"
CONFIG_KEY = "profile"  # top level of config.json; Go Bifrost's schema has no such key to clash with


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    instance_class: str
    summary: str
    workers: int  # 0 = one per usable CPU
    concurrency: int
    buffer_size: int
    initial_pool_size: int
    connection_pool_limit: int
    connection_pool_limit_per_host: int
    keepalive_timeout_s: float
    listen_backlog: int
    log_batch_size: int
    log_flush_interval_ms: int
    drop_excess_requests: bool
    idle_spin_us: int

    def workers_for(self, instance: InstanceInfo) -> int:
        return self.workers if self.workers > 0 else instance.usable_cpus

    def tuning(self) -> Tuning:
        """The runtime's Tuning for this profile (per-provider lane figures are defaults there:
        a provider's own ``concurrency_and_buffer_size`` in config.json beats them)."""
        return Tuning(
            profile=self.name,
            default_concurrency=self.concurrency,
            default_buffer_size=self.buffer_size,
            connection_pool_limit=self.connection_pool_limit,
            connection_pool_limit_per_host=self.connection_pool_limit_per_host,
            keepalive_timeout_s=self.keepalive_timeout_s,
            listen_backlog=self.listen_backlog,
            log_batch_size=self.log_batch_size,
            log_flush_interval_ms=self.log_flush_interval_ms,
            idle_spin_us=self.idle_spin_us,
        )

    def client_defaults(self) -> ClientConfig:
        """Defaults for config.json's ``client`` block; keys the file sets win."""
        return ClientConfig(drop_excess_requests=self.drop_excess_requests, initial_pool_size=self.initial_pool_size)

    def knobs(self) -> dict[str, Any]:
        """The tuning values only (no name/description), in table order."""
        skip = {"name", "instance_class", "summary"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


PROFILES: dict[str, Profile] = {
    "cost": Profile(
        name="cost",
        instance_class="t3.medium class (2 vCPU, 4 GB)",
        summary="least memory: one worker, shallower queues, load shedding",
        workers=1,
        concurrency=1000,
        buffer_size=15000,
        initial_pool_size=10000,
        connection_pool_limit=2000,
        connection_pool_limit_per_host=1000,
        keepalive_timeout_s=15.0,
        listen_backlog=1024,
        log_batch_size=500,
        log_flush_interval_ms=200,
        drop_excess_requests=True,
        idle_spin_us=200,
    ),
    "speed": Profile(
        name="speed",
        instance_class="t3.xlarge class (4 vCPU, 16 GB)",
        summary="lowest latency: a worker per CPU, deeper queues, warm upstream sockets",
        workers=0,
        concurrency=2500,
        buffer_size=20000,
        initial_pool_size=15000,
        connection_pool_limit=8000,
        connection_pool_limit_per_host=2500,
        keepalive_timeout_s=60.0,
        listen_backlog=4096,
        log_batch_size=1000,
        log_flush_interval_ms=100,
        drop_excess_requests=False,
        idle_spin_us=200,
    ),
}

PROFILE_CHOICES: tuple[str, ...] = (*PROFILES, AUTO)

# One line each for `bifrost tune`; the module docstring has the full story.
KNOB_HELP: dict[str, str] = {
    "workers": "gateway processes",
    "concurrency": "upstream requests in flight / provider",
    "buffer_size": "requests queued for a lane / provider",
    "initial_pool_size": "request-log records buffered",
    "connection_pool_limit": "upstream sockets, total",
    "connection_pool_limit_per_host": "upstream sockets / host",
    "keepalive_timeout_s": "idle upstream socket kept (s)",
    "listen_backlog": "connections queued by the kernel",
    "log_batch_size": "log records per SQLite commit",
    "log_flush_interval_ms": "longest wait for a log commit",
    "drop_excess_requests": "429 when the queue is full",
    "idle_spin_us": "busy-poll after traffic (µs, adaptive)",
}

# `auto` picks `speed` when the instance can run the speed profile's workers and their memory.
# 4 usable CPUs: speed runs a worker per CPU and below 4 it buys little over one loop per core.
# 7 GiB: an "8 GB" machine reports ~7.6 GiB MemTotal; below that the deeper per-worker queues
# and socket pools of `speed` are a real share of RAM, which is what `cost` is for.
AUTO_SPEED_MIN_CPUS = 4
AUTO_SPEED_MIN_MEMORY_BYTES = 7 * 1024**3


def select_profile(instance: InstanceInfo) -> str:
    """The profile ``auto`` stands for on ``instance``: see the thresholds above.

    Unknown memory (no source readable) is judged on CPUs alone.
    """
    enough_cpu = instance.usable_cpus >= AUTO_SPEED_MIN_CPUS
    enough_memory = instance.memory_bytes is None or instance.memory_bytes >= AUTO_SPEED_MIN_MEMORY_BYTES
    return "speed" if enough_cpu and enough_memory else "cost"


@dataclass(frozen=True, slots=True)
class ResolvedProfile:
    profile: Profile
    requested: str  # what the winning source said: "cost", "speed" or "auto"
    source: str  # "flag", "env", "config" or "default"

    @property
    def name(self) -> str:
        return self.profile.name

    def describe(self) -> str:
        how = f"auto -> {self.name}" if self.requested == AUTO else self.name
        return f"{how} (from {self.source})"


def _check(name: str, where: str) -> str:
    value = name.strip().lower()
    if value not in PROFILE_CHOICES:
        raise ValueError(f"unknown profile {name!r} in {where}; choose one of: {', '.join(PROFILE_CHOICES)}")
    return value


def saved_profile(config: Mapping[str, Any] | None) -> str | None:
    """The profile saved in a parsed config.json (top-level ``"profile"``), if any."""
    if not config:
        return None
    value = config.get(CONFIG_KEY)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f'"{CONFIG_KEY}" in config.json must be a string, got {type(value).__name__}')
    return _check(value, "config.json")


def resolve_profile(
    instance: InstanceInfo,
    flag: str | None = None,
    config: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ResolvedProfile:
    """Precedence: ``--profile`` flag > ``BIFROST_PROFILE`` > config.json ``"profile"`` > auto.

    Raises ValueError naming the source when a value is not a known profile.
    """
    env = os.environ if environ is None else environ
    candidates = (
        (flag, "flag", "--profile"),
        (env.get(ENV_VAR) or None, "env", ENV_VAR),
    )
    for value, source, where in candidates:
        if value:
            requested = _check(value, where)
            return _resolved(instance, requested, source)
    saved = saved_profile(config)
    if saved is not None:
        return _resolved(instance, saved, "config")
    return _resolved(instance, AUTO, "default")


def _resolved(instance: InstanceInfo, requested: str, source: str) -> ResolvedProfile:
    name = select_profile(instance) if requested == AUTO else requested
    return ResolvedProfile(profile=PROFILES[name], requested=requested, source=source)

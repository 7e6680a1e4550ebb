"""Detect the instance the gateway runs on: usable CPUs and usable memory.

"Usable" means what this process may actually consume, not what the host has: in a container the
scheduler affinity mask and the cgroup quota/limit are what matter (a 64-core host running us under
`--cpus=2 --memory=4g` must be sized as a 2 vCPU / 4 GB machine).

CPUs  = min(len(sched_getaffinity), cgroup quota / period)   (cgroup v2 ``cpu.max``, v1 ``cfs_*``)
Memory = min(cgroup limit, MemTotal)                         (v2 ``memory.max``, v1 ``limit_in_bytes``)

Limits are hierarchical, so the cgroup of this process *and every ancestor up to the mount* is read
and the smallest limit wins. Every reader takes a ``root`` path so tests point it at a fake tree.
Nothing here raises: a missing or garbled file just means "no limit from that source", and the
final fallbacks (``os.cpu_count``, ``sysconf``, Windows ``GlobalMemoryStatusEx``) cover macOS and
Windows, where there is no cgroup.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

__all__ = ["InstanceInfo", "RpsSizing", "detect_cpus", "detect_instance", "detect_memory"]

# cgroup v1 reports "no limit" as a page-rounded LONG_MAX (9223372036854771712); anything at or above
# 2**60 bytes (1 EiB) is that sentinel, never a real limit.
_UNLIMITED_BYTES = 1 << 60

_GIB = 1024**3


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """What the gateway may use here. ``cpus`` may be fractional (cgroup quota of 1.5 CPUs)."""

    cpus: float
    memory_bytes: int | None  # None only when no source at all could be read
    cpu_source: str
    memory_source: str
    cpu_quota: float | None = None  # a cgroup CPU quota (in CPUs), whether or not it is below the CPU count

    @property
    def usable_cpus(self) -> int:
        """Whole CPUs for process/worker counts.

        Rounded down: a worker per fractional CPU would only make the quota throttle all of them.
        """
        return max(1, math.floor(self.cpus + 1e-9))

    @property
    def memory_gib(self) -> float | None:
        return None if self.memory_bytes is None else self.memory_bytes / _GIB

    def describe(self) -> str:
        cpus = f"{self.cpus:g} vCPU"
        mem = "unknown memory" if self.memory_gib is None else f"{self.memory_gib:.1f} GiB"
        return f"{cpus}, {mem}"


# --------------------------------------------------------------------------------------------------
# small readers: return None instead of raising


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except (OSError, ValueError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _under(root: Path, absolute: str) -> Path:
    """``absolute`` (a path as the kernel reports it) re-rooted under ``root``."""
    return root / absolute.lstrip("/")


# --------------------------------------------------------------------------------------------------
# where this process's cgroups are


@dataclass(frozen=True, slots=True)
class _Mount:
    mount_point: str  # absolute, as in /proc/self/mountinfo
    mount_root: str  # the cgroup path this mount exposes at mount_point ("/" unless bind-mounted)
    fstype: str  # "cgroup" or "cgroup2"
    controllers: frozenset[str]  # v1 controllers in the super options; empty for v2


def _mounts(root: Path) -> list[_Mount]:
    text = _read(_under(root, "/proc/self/mountinfo"))
    if text is None:
        return []
    found: list[_Mount] = []
    for line in text.splitlines():
        # "36 25 0:32 / /sys/fs/cgroup/cpu rw,relatime shared:11 - cgroup cgroup rw,cpu,cpuacct"
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        pre_fields, post_fields = pre.split(), post.split()
        if len(pre_fields) < 5 or len(post_fields) < 3:
            continue
        fstype = post_fields[0]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        controllers = frozenset(post_fields[2].split(",")) if fstype == "cgroup" else frozenset()
        found.append(_Mount(pre_fields[4], pre_fields[3], fstype, controllers))
    return found


def _membership(root: Path) -> dict[str, str]:
    """Controller name -> cgroup path from /proc/self/cgroup; the v2 unified entry is under ""."""
    text = _read(_under(root, "/proc/self/cgroup"))
    if text is None:
        return {}
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            paths[""] = path
        for name in controllers.split(","):
            if name:
                paths[name] = path
    return paths


# Used when /proc/self/mountinfo is unreadable: the layouts systemd and Docker create.
_DEFAULT_V2_MOUNTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")
_DEFAULT_V1_MOUNTS = {
    "cpu": ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpuacct,cpu"),
    "memory": ("/sys/fs/cgroup/memory",),
}


def _chain(root: Path, mount_point: str, mount_root: str, cgroup_path: str | None) -> list[Path]:
    """Directories holding limits for this process, innermost first, ending at the mount itself.

    When the process's cgroup path lies outside what the mount exposes (a container with its own
    cgroup namespace sees "/" or a host path), only the mount directory is used: in a namespaced
    container that directory *is* the container's cgroup.
    """
    top = _under(root, mount_point)
    dirs: list[Path] = []
    if cgroup_path is not None:
        rel = os.path.relpath(cgroup_path, mount_root) if cgroup_path.startswith(mount_root) else None
        if rel is not None and rel != "." and not rel.startswith(".."):
            here = top / rel
            if here.is_dir():
                while here != top:
                    dirs.append(here)
                    here = here.parent
    dirs.append(top)
    return dirs


def _v2_dirs(root: Path, mounts: list[_Mount], membership: dict[str, str]) -> list[Path]:
    v2 = [m for m in mounts if m.fstype == "cgroup2"]
    path = membership.get("")
    if v2:
        return [d for m in v2 for d in _chain(root, m.mount_point, m.mount_root, path)]
    if mounts:  # mountinfo was readable and lists no cgroup2 mount
        return []
    return [d for mp in _DEFAULT_V2_MOUNTS for d in _chain(root, mp, "/", path)]


def _v1_dirs(root: Path, mounts: list[_Mount], membership: dict[str, str], controller: str) -> list[Path]:
    v1 = [m for m in mounts if m.fstype == "cgroup" and controller in m.controllers]
    path = membership.get(controller)
    if v1:
        return [d for m in v1 for d in _chain(root, m.mount_point, m.mount_root, path)]
    if mounts:
        return []
    return [d for mp in _DEFAULT_V1_MOUNTS[controller] for d in _chain(root, mp, "/", path)]


# --------------------------------------------------------------------------------------------------
# CPU


def _affinity_count() -> tuple[int, str]:
    if hasattr(os, "sched_getaffinity"):
        try:
            return len(os.sched_getaffinity(0)), "sched_getaffinity"
        except OSError:
            pass
    return os.cpu_count() or 1, "os.cpu_count"


def _v2_cpu_quota(d: Path) -> float | None:
    text = _read(d / "cpu.max")  # "max 100000" or "150000 100000"
    if text is None:
        return None
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_cpu_quota(d: Path) -> float | None:
    quota = _read_int(d / "cpu.cfs_quota_us")  # -1 = unlimited
    period = _read_int(d / "cpu.cfs_period_us")
    if quota is None or period is None or quota <= 0 or period <= 0:
        return None
    return quota / period


def detect_cpu_quota(root: str | os.PathLike[str] = "/") -> tuple[float, str] | None:
    """The tightest cgroup CPU quota over this process's cgroups (in CPUs) and where it is set, or None."""
    return _tightest(Path(root), "cpu", (_v2_cpu_quota, "cgroup v2 cpu.max"), (_v1_cpu_quota, "cgroup v1 cfs quota"))


_Num = TypeVar("_Num", int, float)


def _tightest(
    base: Path,
    v1_controller: str,
    v2: tuple[Callable[[Path], _Num | None], str],
    v1: tuple[Callable[[Path], _Num | None], str],
) -> tuple[_Num, str] | None:
    """The lowest limit any of this process's cgroups (v2, then the v1 `v1_controller` hierarchy) sets, with
    the label of the file it came from, or None when none sets one."""
    mounts, membership = _mounts(base), _membership(base)
    found: list[tuple[_Num, str]] = []
    for d in _v2_dirs(base, mounts, membership):
        value = v2[0](d)
        if value is not None:
            found.append((value, v2[1]))
    for d in _v1_dirs(base, mounts, membership, v1_controller):
        value = v1[0](d)
        if value is not None:
            found.append((value, v1[1]))
    return min(found) if found else None


def detect_cpus(root: str | os.PathLike[str] = "/", affinity: int | None = None) -> tuple[float, str]:
    """Usable CPUs and a note saying where the number came from.

    ``affinity`` replaces ``sched_getaffinity`` (tests; the mask belongs to the live process, so it
    cannot come from a fake tree).
    """
    base = Path(root)
    if affinity is None:
        count, source = _affinity_count()
    else:
        count, source = affinity, "affinity"
    cpus: float = float(max(1, count))
    note = f"{source} ({count})"

    quota = detect_cpu_quota(base)
    if quota is not None and quota[0] < cpus:
        cpus, note = quota[0], f"{quota[1]} ({quota[0]:g} of {count} CPUs)"
    return cpus, note


# --------------------------------------------------------------------------------------------------
# memory


def _meminfo_total(root: Path) -> int | None:
    text = _read(_under(root, "/proc/meminfo"))
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            fields = line.split()  # "MemTotal:  16326428 kB"
            try:
                return int(fields[1]) * 1024
            except (IndexError, ValueError):
                return None
    return None


def _physical_memory() -> tuple[int | None, str]:
    """Host memory without /proc: sysconf on macOS/BSD, GlobalMemoryStatusEx on Windows."""
    if sys.platform == "win32":
        return _windows_memory(), "GlobalMemoryStatusEx"
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and size > 0:
            return pages * size, "sysconf"
    except (AttributeError, ValueError, OSError):
        pass
    return None, "unknown"


def _windows_memory() -> int | None:
    try:
        import ctypes

        class _MemoryStatusEx(ctypes.Structure):
            _fields_ = [
                ("dwLength", ctypes.c_ulong),
                ("dwMemoryLoad", ctypes.c_ulong),
                ("ullTotalPhys", ctypes.c_ulonglong),
                ("ullAvailPhys", ctypes.c_ulonglong),
                ("ullTotalPageFile", ctypes.c_ulonglong),
                ("ullAvailPageFile", ctypes.c_ulonglong),
                ("ullTotalVirtual", ctypes.c_ulonglong),
                ("ullAvailVirtual", ctypes.c_ulonglong),
                ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
            ]

        status = _MemoryStatusEx()
        status.dwLength = ctypes.sizeof(_MemoryStatusEx)
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
            return int(status.ullTotalPhys)
    except Exception:  # any ctypes failure means "unknown", never a crash at start-up
        return None
    return None


def _v2_memory_limit(d: Path) -> int | None:
    text = _read(d / "memory.max")  # "max" or bytes
    if text is None or text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 < value < _UNLIMITED_BYTES else None


def _v1_memory_limit(d: Path) -> int | None:
    value = _read_int(d / "memory.limit_in_bytes")
    return value if value is not None and 0 < value < _UNLIMITED_BYTES else None


def detect_memory(root: str | os.PathLike[str] = "/") -> tuple[int | None, str]:
    """Usable memory in bytes and a note saying where the number came from."""
    base = Path(root)
    total = _meminfo_total(base)
    if total is not None:
        source = "/proc/meminfo MemTotal"
    elif base == Path("/"):
        total, source = _physical_memory()
    else:  # a fake tree without meminfo: do not leak the real host's numbers into a test
        source = "unknown"

    limits = _tightest(
        base,
        "memory",
        (_v2_memory_limit, "cgroup v2 memory.max"),
        (_v1_memory_limit, "cgroup v1 memory.limit_in_bytes"),
    )
    if limits:
        limit, lsource = limits
        # A limit above physical memory (common: a cgroup sized for a bigger host) is no limit at all.
        if total is None or limit < total:
            return limit, lsource
    return total, source


def detect_instance(root: str | os.PathLike[str] = "/", affinity: int | None = None) -> InstanceInfo:
    cpus, cpu_source = detect_cpus(root, affinity)
    memory, memory_source = detect_memory(root)
    quota = detect_cpu_quota(root)
    return InstanceInfo(
        cpus=cpus,
        memory_bytes=memory,
        cpu_source=cpu_source,
        memory_source=memory_source,
        cpu_quota=None if quota is None else quota[0],
    )


# --------------------------------------------------------------------------------------------------
# sizing from a target load: `bifrost tune --rps N --latency S`
#
# The rule is the one Go Bifrost publishes for `concurrency_and_buffer_size`:
#     buffer_size = target_rps x avg_latency_s x 3
# and concurrency = target_rps x avg_latency_s (Little's law: the requests in flight at that rate),
# both rounded up. The other figures follow from them:
#   connection_pool_limit_per_host = concurrency (a lane permit never waits for a socket; the
#   profiles use the same rule), connection_pool_limit = concurrency x providers (each provider its
#   own origin), initial_pool_size (the request-log buffer) = 2 s of traffic (a commit may stall
#   ten times its 100-200 ms interval before a record is dropped), at least 1,000.
#
# Memory estimates (per worker process; a lane's queue and the pools allocate only when used, so
# these are the figures when every slot is full):
#   QUEUED_REQUEST_BYTES  16 KiB: a 4 KiB chat body held as bytes and as parsed JSON (~3x) plus the
#                         handler task, its frames and the lane waiter (~4 KiB). Bodies being read
#                         are capped in total by client.max_request_bodies_in_flight_mb (256 MB).
#   CONNECTION_BYTES      80 KiB: the response-head buffer a socket may hold (runtime/net/client.py
#                         _MAX_HEAD, 64 KiB) plus the transport and TLS objects (~16 KiB).
#   LOG_RECORD_BYTES       2 KiB: one request-log row with short input/output (the content is cut
#                         at client.max_log_content_kb, 256 KB per text, so long prompts cost more).

BUFFER_FACTOR = 3  # Go Bifrost's published headroom: three times the requests in flight may queue
LOG_BUFFER_SECONDS = 2.0
MIN_LOG_BUFFER = 1000
QUEUED_REQUEST_BYTES = 16 * 1024
CONNECTION_BYTES = 64 * 1024 + 16 * 1024
LOG_RECORD_BYTES = 2 * 1024


def _ceil(value: float) -> int:
    """Round up, ignoring float noise (0.1 x 30 x 3 is 9.000000000000002, which means 9)."""
    return max(1, math.ceil(round(value, 6)))


@dataclass(frozen=True, slots=True)
class RpsSizing:
    """Lane and pool figures for ``rps`` requests/s at ``latency_s`` average upstream latency."""

    rps: int
    latency_s: float
    providers: int  # lanes sized (at least 1 for the estimate)

    def __post_init__(self) -> None:
        if isinstance(self.rps, bool) or not isinstance(self.rps, int) or self.rps <= 0:
            raise ValueError(f"rps must be a whole number above 0, got {self.rps!r}")
        if not math.isfinite(self.latency_s) or self.latency_s <= 0:
            raise ValueError(f"latency must be a finite number of seconds above 0, got {self.latency_s!r}")
        if self.providers < 1:
            raise ValueError("providers must be at least 1")

    @property
    def in_flight(self) -> float:
        return self.rps * self.latency_s

    @property
    def concurrency(self) -> int:
        return _ceil(self.in_flight)

    @property
    def buffer_size(self) -> int:
        return _ceil(self.in_flight * BUFFER_FACTOR)

    @property
    def connection_pool_limit_per_host(self) -> int:
        return self.concurrency

    @property
    def connection_pool_limit(self) -> int:
        return self.concurrency * self.providers

    @property
    def initial_pool_size(self) -> int:
        return max(MIN_LOG_BUFFER, _ceil(self.rps * LOG_BUFFER_SECONDS))

    def memory_bytes(self) -> dict[str, int]:
        """Full-slot memory per worker, by part (see the estimates above)."""
        lanes = self.providers
        return {
            "queued requests": lanes * self.buffer_size * QUEUED_REQUEST_BYTES,
            "in-flight requests": lanes * self.concurrency * QUEUED_REQUEST_BYTES,
            "upstream sockets": self.connection_pool_limit * CONNECTION_BYTES,
            "request-log buffer": self.initial_pool_size * LOG_RECORD_BYTES,
        }

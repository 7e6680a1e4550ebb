"""Instance detection against fake /proc and cgroup trees (v1, v2, hybrid, nested, garbage)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bifrost_cli.sizing import InstanceInfo, detect_cpu_quota, detect_cpus, detect_instance, detect_memory

GIB = 1024**3
HOST_MEMINFO = "MemTotal:       16326428 kB\nMemFree:         1000000 kB\n"
HOST_BYTES = 16326428 * 1024

V2_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNTINFO = (
    "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
)


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def proc(root: Path, mountinfo: str, cgroup: str, meminfo: str | None = HOST_MEMINFO) -> Path:
    write(root, "/proc/self/mountinfo", mountinfo)
    write(root, "/proc/self/cgroup", cgroup)
    if meminfo is not None:
        write(root, "/proc/meminfo", meminfo)
    return root


# ---------------------------------------------------------------------------------------- cgroup v2


def test_v2_namespaced_container_quota_and_limit(tmp_path: Path) -> None:
    # Docker with its own cgroup namespace: the process sees "/" and the mount root is its cgroup.
    root = proc(tmp_path, V2_MOUNTINFO, "0::/\n")
    write(root, "/sys/fs/cgroup/cpu.max", "150000 100000\n")
    write(root, "/sys/fs/cgroup/memory.max", f"{4 * GIB}\n")

    info = detect_instance(root, affinity=8)

    assert info.cpus == pytest.approx(1.5)
    assert info.usable_cpus == 1
    assert "cgroup v2 cpu.max" in info.cpu_source
    assert info.memory_bytes == 4 * GIB
    assert info.memory_source == "cgroup v2 memory.max"


def test_v2_unlimited_falls_back_to_affinity_and_meminfo(tmp_path: Path) -> None:
    root = proc(tmp_path, V2_MOUNTINFO, "0::/\n")
    write(root, "/sys/fs/cgroup/cpu.max", "max 100000\n")
    write(root, "/sys/fs/cgroup/memory.max", "max\n")

    info = detect_instance(root, affinity=4)

    assert info.cpus == 4
    assert info.cpu_source == "affinity (4)"
    assert info.memory_bytes == HOST_BYTES
    assert info.memory_source == "/proc/meminfo MemTotal"


def test_v2_nested_cgroup_smallest_ancestor_limit_wins(tmp_path: Path) -> None:
    # systemd slice with a 2-CPU quota; the service below it sets none; memory is tighter below.
    root = proc(tmp_path, V2_MOUNTINFO, "0::/system.slice/bifrost.service\n")
    write(root, "/sys/fs/cgroup/system.slice/cpu.max", "200000 100000\n")
    write(root, "/sys/fs/cgroup/system.slice/memory.max", f"{8 * GIB}\n")
    write(root, "/sys/fs/cgroup/system.slice/bifrost.service/cpu.max", "max 100000\n")
    write(root, "/sys/fs/cgroup/system.slice/bifrost.service/memory.max", f"{3 * GIB}\n")

    info = detect_instance(root, affinity=16)

    assert info.cpus == 2
    assert info.memory_bytes == 3 * GIB


def test_v2_cgroup_path_outside_mount_uses_mount_dir(tmp_path: Path) -> None:
    # A host path the container cannot see below its mount: the mount directory is the cgroup.
    root = proc(tmp_path, V2_MOUNTINFO, "0::/kubepods/pod123/abc\n")
    write(root, "/sys/fs/cgroup/cpu.max", "100000 100000\n")

    cpus, source = detect_cpus(root, affinity=4)

    assert cpus == 1
    assert "cpu.max" in source


def test_affinity_below_quota_wins(tmp_path: Path) -> None:
    root = proc(tmp_path, V2_MOUNTINFO, "0::/\n")
    write(root, "/sys/fs/cgroup/cpu.max", "800000 100000\n")

    cpus, source = detect_cpus(root, affinity=2)

    assert cpus == 2
    assert source == "affinity (2)"
    # The quota is still known (the idle spin is off under any quota, even one above the CPU count).
    assert detect_cpu_quota(root) == (8.0, "cgroup v2 cpu.max")
    assert detect_instance(root, affinity=2).cpu_quota == 8.0


def test_no_quota_is_none(tmp_path: Path) -> None:
    root = proc(tmp_path, V2_MOUNTINFO, "0::/\n")
    write(root, "/sys/fs/cgroup/cpu.max", "max 100000\n")
    assert detect_cpu_quota(root) is None
    assert detect_instance(root, affinity=2).cpu_quota is None


# ---------------------------------------------------------------------------------------- cgroup v1


def test_v1_quota_and_memory_limit(tmp_path: Path) -> None:
    root = proc(tmp_path, V1_MOUNTINFO, "4:memory:/\n2:cpu,cpuacct:/\n0::/\n")
    write(root, "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "400000\n")
    write(root, "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    write(root, "/sys/fs/cgroup/memory/memory.limit_in_bytes", f"{2 * GIB}\n")

    info = detect_instance(root, affinity=32)

    assert info.cpus == 4
    assert "cgroup v1" in info.cpu_source
    assert info.memory_bytes == 2 * GIB
    assert info.memory_source == "cgroup v1 memory.limit_in_bytes"


def test_v1_unlimited_sentinels_are_ignored(tmp_path: Path) -> None:
    # What this very build machine shows: quota -1 and a page-rounded LONG_MAX memory limit.
    root = proc(tmp_path, V1_MOUNTINFO, "4:memory:/process_api/8cfd\n2:cpu,cpuacct:/\n")
    write(root, "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n")
    write(root, "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    write(root, "/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n")
    write(root, "/sys/fs/cgroup/memory/process_api/8cfd/memory.limit_in_bytes", "9223372036854771712\n")

    info = detect_instance(root, affinity=2)

    assert info.cpus == 2
    assert info.memory_bytes == HOST_BYTES
    assert info.memory_source == "/proc/meminfo MemTotal"


def test_v1_nested_memory_limit_below_mount(tmp_path: Path) -> None:
    root = proc(tmp_path, V1_MOUNTINFO, "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n")
    write(root, "/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n")
    write(root, "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", f"{GIB}\n")
    write(root, "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "50000\n")
    write(root, "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n")

    info = detect_instance(root, affinity=8)

    assert info.memory_bytes == GIB
    assert info.cpus == pytest.approx(0.5)
    assert info.usable_cpus == 1  # never zero workers


def test_limit_above_physical_memory_is_no_limit(tmp_path: Path) -> None:
    root = proc(tmp_path, V2_MOUNTINFO, "0::/\n")
    write(root, "/sys/fs/cgroup/memory.max", f"{64 * GIB}\n")

    memory, source = detect_memory(root)

    assert memory == HOST_BYTES
    assert source == "/proc/meminfo MemTotal"


def test_hybrid_layout_prefers_the_tighter_of_v1_and_v2(tmp_path: Path) -> None:
    root = proc(tmp_path, V1_MOUNTINFO, "4:memory:/\n2:cpu,cpuacct:/\n0::/\n")
    write(root, "/sys/fs/cgroup/unified/cpu.max", "300000 100000\n")
    write(root, "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "200000\n")
    write(root, "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n")

    cpus, source = detect_cpus(root, affinity=8)

    assert cpus == 2
    assert "v1" in source


# ------------------------------------------------------------------------------- missing / garbage


def test_no_mountinfo_uses_default_layout(tmp_path: Path) -> None:
    write(tmp_path, "/proc/meminfo", HOST_MEMINFO)
    write(tmp_path, "/sys/fs/cgroup/cpu.max", "250000 100000\n")
    write(tmp_path, "/sys/fs/cgroup/memory.max", f"{6 * GIB}\n")

    info = detect_instance(tmp_path, affinity=8)

    assert info.cpus == pytest.approx(2.5)
    assert info.usable_cpus == 2
    assert info.memory_bytes == 6 * GIB


@pytest.mark.parametrize(
    ("cpu_max", "memory_max", "meminfo"),
    [
        ("garbage", "lots", "MemTotal: many kB\n"),
        ("0 100000", "0", "nothing useful\n"),
        ("100000", "-5", ""),
        ("", "", "MemTotal:\n"),
    ],
)
def test_garbage_never_raises(tmp_path: Path, cpu_max: str, memory_max: str, meminfo: str) -> None:
    root = proc(tmp_path, V2_MOUNTINFO + "not a mountinfo line\n", "garbage\n0::/\n", meminfo)
    write(root, "/sys/fs/cgroup/cpu.max", cpu_max)
    write(root, "/sys/fs/cgroup/memory.max", memory_max)

    info = detect_instance(root, affinity=3)

    assert info.cpus == 3
    assert info.memory_bytes is None
    assert info.memory_source == "unknown"
    assert info.describe() == "3 vCPU, unknown memory"


def test_empty_tree(tmp_path: Path) -> None:
    info = detect_instance(tmp_path, affinity=1)
    assert info == InstanceInfo(cpus=1.0, memory_bytes=None, cpu_source="affinity (1)", memory_source="unknown")


def test_real_machine_gives_sane_numbers() -> None:
    info = detect_instance()
    assert info.cpus >= 0.01
    assert info.usable_cpus >= 1
    assert info.memory_bytes is None or info.memory_bytes > 64 * 1024**2
    assert "vCPU" in info.describe()

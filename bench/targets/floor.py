"""The framework floors (bench/floor_relay.py) as targets: ``floor-aiohttp`` and ``floor-raw``.

Each relays chat requests to the mock through Bifrost's upstream client and nothing else, pinned like a
gateway. Run beside ``direct`` and ``bifrost`` they split Bifrost's added latency into what the HTTP
framework costs (floor-aiohttp over direct), what an HTTP framework costs at all (floor-aiohttp over
floor-raw), and what Bifrost's own pipeline costs (bifrost over floor-aiohttp).
"""

from __future__ import annotations

import os
import sys
import tempfile

from bench import control
from bench.mockproc import REPO_ROOT, child_env
from bench.pinning import Layout
from bench.targets.base import Running, Target


class FloorTarget(Target):
    """``python -m bench.floor_relay --server <server>``; ``server`` is ``aiohttp`` or ``raw``."""

    start_timeout = 30.0  # one small module to import

    def __init__(self, server: str) -> None:
        super().__init__()
        self.server = server
        self.name = f"floor-{server}"
        self.work_dir = ""

    def start(self, mock_origin: str, layout: Layout, port: int | None = None) -> Running:
        self.work_dir = tempfile.mkdtemp(prefix=f"bench-{self.name}-")
        port = port or control.free_port()
        cmd = [*layout.gateway_prefix(), sys.executable, "-m", "bench.floor_relay", "--server", self.server]
        cmd += ["--port", str(port), "--upstream", mock_origin]
        log_path = os.path.join(self.work_dir, "floor.log")
        proc = self._spawn_ready(
            cmd,
            child_env(),
            log_path,
            port=port,
            layout=layout,
            cwd=REPO_ROOT,
        )
        return Running(
            name=self.name,
            port=port,
            model="gpt-4o-mini",
            pid=proc.pid,
            notes=[f"framework floor: {self.server} server, Bifrost's upstream client, no pipeline (chat only)"],
        )


class FloorAiohttpTarget(FloorTarget):
    name = "floor-aiohttp"

    def __init__(self) -> None:
        super().__init__("aiohttp")


class FloorRawTarget(FloorTarget):
    name = "floor-raw"

    def __init__(self) -> None:
        super().__init__("raw")

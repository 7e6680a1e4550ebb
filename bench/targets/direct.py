"""The baseline: the load generator talks to the mock provider itself, no gateway in between."""

from __future__ import annotations

from urllib.parse import urlparse

from bench.pinning import Layout
from bench.targets.base import Running, Target


class DirectTarget(Target):
    """Direct-to-mock; its RSS/CPU figures are the mock's (useful: the mock's own cost)."""

    name = "direct"

    def __init__(self, mock_pid: int | None = None) -> None:
        super().__init__()
        self.mock_pid = mock_pid

    def start(self, mock_origin: str, layout: Layout, port: int | None = None) -> Running:
        mock_port = urlparse(mock_origin).port
        assert mock_port is not None
        return Running(
            name=self.name,
            port=mock_port,
            model="gpt-4o-mini",
            pid=self.mock_pid,
            notes=["RSS/CPU are the mock provider's own"],
        )

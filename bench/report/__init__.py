"""The Markdown report with PNG charts, and the issue's targets checked against the results."""

from __future__ import annotations

from bench.report.markdown import write_report

__all__ = ["write_report"]

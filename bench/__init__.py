"""Bifrost benchmark suite: mock provider, open-loop load generator, scenarios and reports.

Run as ``python -m bench ...``; see bench/README.md for the method and the results.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"

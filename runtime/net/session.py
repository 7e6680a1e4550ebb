"""The aiohttp session for auxiliary calls off the hot path (OAuth token fetches by adapters)."""

from __future__ import annotations

import aiohttp


def make_session() -> aiohttp.ClientSession:
    """No cookies (provider APIs use none, and a jar would mix callers' state); statuses are the caller's."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), raise_for_status=False)

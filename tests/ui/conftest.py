"""The browser fixtures of tests/admin (Playwright on Debian's chromium, screenshots) and the cache gateway
fixture of tests/cache, shared with the UI tests here."""

from admin.conftest import browser_page, shot  # noqa: F401  (fixtures are found by name in this module)
from cache.conftest import start_cache_gateway  # noqa: F401

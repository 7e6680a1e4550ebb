"""Fixtures for mid-stream recovery (runtime/core/resume.py): an Anthropic fake as the fallback that
continues a prefill, next to the OpenAI fakes of tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes.native import FakeAnthropic


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    try:
        yield fake
    finally:
        fake.stop()

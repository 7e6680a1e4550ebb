"""Fixtures for the native providers and ingresses: one fake per provider.

The gateway process and the OpenAI fakes come from tests/conftest.py (start_gateway, fake_openai);
config builders and SDK clients are in native_helpers.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes.native import FakeAnthropic, FakeBedrock, FakeGemini


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_gemini() -> Iterator[FakeGemini]:
    fake = FakeGemini().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_bedrock() -> Iterator[FakeBedrock]:
    fake = FakeBedrock().start()
    try:
        yield fake
    finally:
        fake.stop()

"""Fixtures for the native providers and ingresses: one fake per provider.

The gateway process and the OpenAI fakes come from tests/conftest.py (start_gateway, fake_openai);
config builders and SDK clients are in native_helpers.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes.native import FakeBedrock, FakeCohere, FakeGemini, FakeVertex
from fakes.native.vertex_fake import make_service_account


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


@pytest.fixture
def fake_vertex() -> Iterator[FakeVertex]:
    """A Vertex fake that trusts a service account generated for this test (`fake_vertex.service_account`)."""
    fake = FakeVertex().start()
    info, public_key = make_service_account(fake.token_uri)
    fake.trust(info, public_key)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_cohere() -> Iterator[FakeCohere]:
    fake = FakeCohere().start()
    try:
        yield fake
    finally:
        fake.stop()

"""Fakes of the native (non-OpenAI-format) providers, on the shared FakeProvider harness."""

from .anthropic_fake import FakeAnthropic
from .bedrock_fake import FakeBedrock
from .cohere_fake import FakeCohere
from .common import NativeReply, native_error
from .gemini_fake import FakeGemini
from .vertex_fake import FakeVertex

__all__ = ["FakeAnthropic", "FakeBedrock", "FakeCohere", "FakeGemini", "FakeVertex", "NativeReply", "native_error"]

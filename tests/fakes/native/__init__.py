"""Fakes of the native (non-OpenAI-format) providers, on the shared FakeProvider harness."""

from .anthropic_fake import FakeAnthropic
from .bedrock_fake import FakeBedrock
from .common import NativeReply, native_error
from .gemini_fake import FakeGemini

__all__ = ["FakeAnthropic", "FakeBedrock", "FakeGemini", "NativeReply", "native_error"]

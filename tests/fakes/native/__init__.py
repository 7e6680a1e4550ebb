"""Fakes of the native (non-OpenAI-format) providers, on the shared FakeProvider harness."""

from .anthropic_fake import FakeAnthropic
from .common import NativeReply, native_error
from .gemini_fake import FakeGemini

__all__ = ["FakeAnthropic", "FakeGemini", "NativeReply", "native_error"]

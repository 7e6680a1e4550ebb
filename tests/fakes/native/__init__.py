"""Fakes of the native (non-OpenAI-format) providers, on the shared FakeProvider harness."""

from .anthropic_fake import FakeAnthropic
from .common import NativeReply, native_error

__all__ = ["FakeAnthropic", "NativeReply", "native_error"]

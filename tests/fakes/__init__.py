"""Fake providers for the integration tests: real aiohttp servers on 127.0.0.1, port 0, each in
its own thread and event loop, speaking the provider's documented wire format."""

from .azure_fake import FakeAzure
from .base import FakeProvider
from .openai_fake import FakeOpenAI
from .recorder import RecordedRequest, Recorder, wait_until
from .reply import Reply
from .server import ThreadedServer

__all__ = [
    "FakeAzure",
    "FakeOpenAI",
    "FakeProvider",
    "RecordedRequest",
    "Recorder",
    "Reply",
    "ThreadedServer",
    "wait_until",
]

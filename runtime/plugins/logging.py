"""The request-log plugin: on every finished request, hand one row to the writer. Nothing else.

Content is bounded to `client.max_log_content_kb` as the row is built (record.to_row), before it
enters the writer's buffer.
"""

from __future__ import annotations

from runtime.core.context import RequestContext
from runtime.requestlog.record import to_row
from runtime.stores.logs import LogWriter

DEFAULT_CONTENT_LIMIT = 256 * 1024  # bytes; ClientConfig.max_log_content_kb's default


class RequestLogPlugin:
    name = "request-log"

    def __init__(self, writer: LogWriter, content_logging: bool, content_limit: int = DEFAULT_CONTENT_LIMIT) -> None:
        self.writer = writer
        self.content_logging = content_logging
        self.content_limit = content_limit

    def on_finish(self, ctx: RequestContext) -> None:
        self.writer.submit(to_row(ctx, self.content_logging, self.content_limit))

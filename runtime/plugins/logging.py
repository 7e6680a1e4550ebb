"""The request-log plugin: on every finished request, hand one row to the writer. Nothing else."""

from __future__ import annotations

from runtime.core.context import RequestContext
from runtime.requestlog.record import to_row
from runtime.requestlog.writer import LogWriter


class RequestLogPlugin:
    name = "request-log"

    def __init__(self, writer: LogWriter, content_logging: bool) -> None:
        self.writer = writer
        self.content_logging = content_logging

    def on_finish(self, ctx: RequestContext) -> None:
        self.writer.submit(to_row(ctx, self.content_logging))

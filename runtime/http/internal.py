"""The last line for bugs of ours: an unexpected exception still answers JSON 500, logged and counted.

The inference pipeline catches `Exception` after its GatewayError branch and calls `internal_error`
(runtime/core/flow.py): the request then ends like any failed request, with the ingress's error shape,
a log row with status 500 and a /metrics count. Every other route is covered by the edge middleware
(runtime/http/edge.py), which answers with `last_resort_response`. The client only ever sees a generic
message with the request id; the traceback goes to stderr under the same id, since
an exception's text may quote a key or a header.

`fault_injection` is for the test suite only: with BIFROST_TEST_FAULTS=1 in the gateway's environment a
plugin raises for requests whose `user` field is FAULT_USER, and GET FAULT_PATH raises, so tests can
exercise these paths through a real process without patching it. Unset (always, outside tests) it adds
nothing.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from aiohttp import web

from runtime.core.context import RequestContext
from runtime.errors import InternalError
from runtime.http.errors import error_response
from runtime.http.keys import GATEWAY

log = logging.getLogger("bifrost")

FAULT_ENV = "BIFROST_TEST_FAULTS"
FAULT_USER = "bifrost-test-fault"
FAULT_PATH = "/__bifrost_test/fault"


def last_resort_response(request: web.Request) -> web.Response:
    """Call from an `except Exception` block around any handler: JSON 500, traceback logged under a new id."""
    rid = request.app[GATEWAY].new_id()
    log.exception("internal error in request %s (%s %s)", rid, request.method, request.path)
    return error_response(InternalError(rid), headers={"x-request-id": rid, "x-bf-overhead-us": "0"})


class _FaultPlugin:
    name = "test-fault"

    async def pre_hook(self, ctx: RequestContext) -> Any:
        if ctx.body.get("user") == FAULT_USER:
            raise RuntimeError("injected fault (BIFROST_TEST_FAULTS) sk-test-secret-must-not-leak")
        return None


async def _fault_route(_request: web.Request) -> web.Response:
    raise RuntimeError("injected fault (BIFROST_TEST_FAULTS) sk-test-secret-must-not-leak")


def fault_injection(app: web.Application, plugins: list[Any]) -> None:
    """Test-only fault points (see the module doc); nothing unless BIFROST_TEST_FAULTS=1."""
    if os.environ.get(FAULT_ENV) != "1":
        return
    log.warning("%s=1: test fault injection is on (never set this in production)", FAULT_ENV)
    plugins.append(_FaultPlugin())
    app.router.add_get(FAULT_PATH, _fault_route)

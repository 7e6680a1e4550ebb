"""/api/logs: list with filters, one record in full, stats and time histograms (see queries.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from runtime.http.admin_common import ADMIN, fail, json_response
from runtime.http.keys import GATEWAY
from runtime.requestlog.filters import FilterError, LogFilter, parse_filter, parse_page
from runtime.stores.logs import LogQueryTooSlow, LogReader, LogReadError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DAY_MS = 86_400_000
MAX_BUCKETS = 500


def _queries(request: web.Request) -> LogReader | None:
    queries = request.app[ADMIN].queries
    return queries if queries is not None and queries.available() else None


def _no_log() -> web.Response:
    return fail("the request log is off (client.enable_logging is false) or empty", 404, code="no_request_log")


def _team_keys(request: web.Request) -> dict[str, list[str]]:
    """Each configured team's virtual keys' ids, for the `team_id` filter (the running config's view)."""
    gov = request.app[GATEWAY].config.governance
    if gov is None:
        return {}
    teams: dict[str, list[str]] = {team: [] for team in gov.teams}
    for vk in gov.virtual_keys:
        if vk.team_id in teams:
            teams[vk.team_id].append(vk.id)
    return teams


def _filter(request: web.Request, default_window_ms: int | None = None) -> LogFilter:
    team_keys = _team_keys(request) if request.query.get("team_id") else None
    return parse_filter(request.query, default_window_ms, team_keys)


def _bad(exc: FilterError) -> web.Response:
    return fail(str(exc), 400, param=exc.param, code="invalid_filter")


def _timed(data: dict[str, Any], started: float) -> web.Response:
    data["query_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return json_response(data)


async def list_logs(request: web.Request) -> web.Response:
    queries = _queries(request)
    if queries is None:
        return json_response({"items": [], "total": 0, "limit": 50, "offset": 0, "has_more": False})
    try:
        f = _filter(request)
        page = parse_page(request.query)
    except FilterError as exc:
        return _bad(exc)
    started = time.perf_counter()
    return _timed(await queries.list(f, page), started)


async def get_log(request: web.Request) -> web.Response:
    queries = _queries(request)
    if queries is None:
        return _no_log()
    record = await queries.get(request.match_info["id"])
    if record is None:
        return fail(
            f"no log record with id {request.match_info['id']!r} (it may not be flushed yet)", 404, code="not_found"
        )
    return json_response(record)


async def log_stats(request: web.Request) -> web.Response:
    queries = _queries(request)
    if queries is None:
        return _no_log()
    try:
        f = _filter(request, default_window_ms=DAY_MS)
        group_by = request.query.get("group_by") or None
        if group_by not in (None, "virtual_key"):
            raise FilterError("group_by", f"expected virtual_key, got {group_by!r}")
    except FilterError as exc:
        return _bad(exc)
    started = time.perf_counter()
    if group_by is None:
        return _timed(await queries.stats(f), started)
    stats, by_key = await asyncio.gather(queries.stats(f), queries.by_virtual_key(f))
    stats["by_virtual_key"] = by_key
    return _timed(stats, started)


async def log_histogram(request: web.Request) -> web.Response:
    queries = _queries(request)
    if queries is None:
        return _no_log()
    try:
        f = _filter(request, default_window_ms=3_600_000)
        raw = request.query.get("buckets", "60")
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_BUCKETS:
            raise FilterError("buckets", f"expected a whole number from 1 to {MAX_BUCKETS}, got {raw!r}")
    except FilterError as exc:
        return _bad(exc)
    if f.until_ms is None:
        f = dataclasses.replace(f, until_ms=int(time.time() * 1000) + 1)  # buckets need both ends
    started = time.perf_counter()
    return _timed(await queries.histogram(f, int(raw)), started)


async def log_facets(request: web.Request) -> web.Response:
    queries = _queries(request)
    if queries is None:
        return json_response({"providers": [], "models": []})
    return json_response(await queries.facets())


def _answer_errors(handler: Handler) -> Handler:
    """A query past its time budget, or a database that cannot be read right now, is a 503 with a
    readable message, not a 500 with a traceback."""

    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except LogQueryTooSlow as exc:
            return fail(str(exc), 503, code="log_query_too_slow", type="api_error")
        except LogReadError as exc:
            return fail(
                f"the request log cannot be read right now: {exc}", 503, code="log_query_failed", type="api_error"
            )

    return run


def add_routes(app: web.Application, wrap: Callable[[Any], Any]) -> None:
    r = app.router
    for path, handler in (
        ("/api/logs", list_logs),
        ("/api/logs/stats", log_stats),
        ("/api/logs/histogram", log_histogram),
        ("/api/logs/facets", log_facets),
        ("/api/logs/{id}", get_log),
    ):
        r.add_get(path, wrap(_answer_errors(handler)))

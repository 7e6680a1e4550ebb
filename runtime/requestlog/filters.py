"""Log filters: query-string parameters -> a validated LogFilter -> a SQL WHERE clause.

Every value reaches SQLite as a bound parameter; column names come only from the tables below.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Named status classes the UI offers, as SQL on the integer `status` column.
STATUS_CLASSES = {
    "success": "status < 400",
    "error": "status >= 400",
    "2xx": "status BETWEEN 200 AND 299",
    "4xx": "status BETWEEN 400 AND 499",
    "5xx": "status BETWEEN 500 AND 599",
}
SORTS = {
    "ts": "ts_ms",
    "latency": "latency_us",
    "overhead": "overhead_us",
    "tokens": "total_tokens",
    "status": "status",
}
MAX_LIMIT = 500
MAX_NUMBER = 10**15  # far above any timestamp in ms, offset or window; x1000 still fits SQLite's int64


class FilterError(ValueError):
    """A query parameter is malformed; `param` names it."""

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        super().__init__(f"{param}: {message}")


CACHE_VALUES = ("hit", "hit-direct", "hit-semantic", "miss", "none")
GUARDRAIL_ACTIONS = ("block", "redact", "flag")
# A rule name is a config name (runtime/guardrails/config.py); a longer value names no rule.
GUARDRAIL_NAME_LIMIT = 256


@dataclass(frozen=True, slots=True)
class LogFilter:
    since_ms: int | None = None
    until_ms: int | None = None
    providers: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()  # class names or exact codes, OR-ed
    stream: bool | None = None
    endpoint: str | None = None
    min_latency_us: int | None = None
    max_latency_us: int | None = None
    text: str | None = None
    # Governance: rows of these virtual keys (a team filter resolves to its keys). None: no filter;
    # empty: nothing matches (a team without keys).
    virtual_key_ids: tuple[str, ...] | None = None
    # The response cache: "hit" (either kind), "hit-direct", "hit-semantic", "miss", or "none" (not consulted).
    cache: str | None = None
    # Guardrails: rows where this rule acted (`guardrail`), and/or where a rule took this action; both
    # given, the same rule took that action.
    guardrail: str | None = None
    guardrail_action: str | None = None

    @property
    def needs_table(self) -> bool:
        """Whether the filter reads columns the covering indexes lack (the text search does, and so does
        virtual_key_id: adding it to both covering indexes would cost every row's insert more than the
        rare key-filtered query gains; the time range still narrows it through the ts index)."""
        return (
            bool(self.text)
            or self.endpoint is not None
            or self.virtual_key_ids is not None
            or self.cache is not None
            or self.guardrail is not None
            or self.guardrail_action is not None
        )

    def where(self, alias: str = "") -> tuple[str, list[object]]:
        """`(sql, params)`; sql is "1" when nothing filters."""
        a = f"{alias}." if alias else ""
        clauses: list[str] = []
        params: list[object] = []
        if self.since_ms is not None:
            clauses.append(f"{a}ts_ms >= ?")
            params.append(self.since_ms)
        if self.until_ms is not None:
            clauses.append(f"{a}ts_ms < ?")
            params.append(self.until_ms)
        for column, values in ((f"{a}provider", self.providers), (f"{a}model", self.models)):
            if values:
                clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        if self.statuses:
            parts = []
            for status in self.statuses:
                if status in STATUS_CLASSES:
                    parts.append(STATUS_CLASSES[status].replace("status", f"{a}status"))
                else:
                    parts.append(f"{a}status = ?")
                    params.append(int(status))
            clauses.append("(" + " OR ".join(parts) + ")")
        if self.stream is not None:
            clauses.append(f"{a}stream = ?")
            params.append(1 if self.stream else 0)
        if self.endpoint is not None:
            clauses.append(f"{a}endpoint = ?")
            params.append(self.endpoint)
        if self.min_latency_us is not None:
            clauses.append(f"{a}latency_us >= ?")
            params.append(self.min_latency_us)
        if self.max_latency_us is not None:
            clauses.append(f"{a}latency_us <= ?")
            params.append(self.max_latency_us)
        if self.virtual_key_ids is not None:
            if self.virtual_key_ids:
                clauses.append(f"{a}virtual_key_id IN ({', '.join('?' * len(self.virtual_key_ids))})")
                params.extend(self.virtual_key_ids)
            else:
                clauses.append("0")
        if self.cache is not None:
            if self.cache == "hit":
                clauses.append(f"{a}cache LIKE 'hit-%'")
            elif self.cache == "none":
                clauses.append(f"{a}cache IS NULL")
            else:
                clauses.append(f"{a}cache = ?")
                params.append(self.cache)
        if self.guardrail is not None or self.guardrail_action is not None:
            # One element of the row's JSON array matches every condition given. json_each reads only rows
            # that have the column (most have NULL); text that is not JSON is never matched, never an error.
            conditions = []
            for field, value in (("rule", self.guardrail), ("action", self.guardrail_action)):
                if value is not None:
                    conditions.append(f"json_extract(g.value, '$.{field}') = ?")
                    params.append(value)
            clauses.append(
                f"({a}guardrails IS NOT NULL AND EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid({a}guardrails) "
                f"THEN {a}guardrails END) AS g WHERE g.type = 'object' AND {' AND '.join(conditions)}))"
            )
        if self.text:
            pattern = "%" + self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append(
                f"({a}input LIKE ? ESCAPE '\\' OR {a}output LIKE ? ESCAPE '\\' "
                f"OR {a}error LIKE ? ESCAPE '\\' OR {a}id = ?)"
            )
            params.extend((pattern, pattern, pattern, self.text))
        return (" AND ".join(clauses) or "1"), params


def _list(query: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = query.get(name, "")
    return tuple(v.strip() for v in raw.split(",") if v.strip())


def _int(query: Mapping[str, str], name: str, minimum: int | None = None) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        number = float(raw)
    except ValueError:
        raise FilterError(name, f"expected a number, got {raw!r}") from None
    # inf/nan, and numbers SQLite's 64-bit integers cannot hold once scaled (x1000), are malformed too.
    if not math.isfinite(number) or abs(number) > MAX_NUMBER:
        raise FilterError(name, f"expected a finite number of at most {MAX_NUMBER}, got {raw!r}")
    value = int(number)
    if minimum is not None and value < minimum:
        raise FilterError(name, f"must be at least {minimum}, got {value}")
    return value


def _ms_to_us(value: int | None) -> int | None:
    return None if value is None else value * 1000


def _virtual_keys(query: Mapping[str, str], team_keys: Mapping[str, Sequence[str]] | None) -> tuple[str, ...] | None:
    """`virtual_key_id=a,b` and `team_id=t` (t's keys in the running config): both given, their intersection."""
    keys = _list(query, "virtual_key_id") or None
    team = (query.get("team_id") or "").strip()
    if not team:
        return keys
    members = (team_keys or {}).get(team)
    if members is None:
        known = ", ".join(sorted(team_keys or {})[:20]) or "none configured"
        raise FilterError("team_id", f"no team {team!r} in governance.teams (teams: {known})")
    return tuple(k for k in members if keys is None or k in keys)


def parse_filter(
    query: Mapping[str, str],
    default_window_ms: int | None = None,
    team_keys: Mapping[str, Sequence[str]] | None = None,
) -> LogFilter:
    """Build a LogFilter from query parameters (see the OpenAPI document for their meaning).

    `since`/`until` are unix milliseconds; `last` is a window in seconds ending now (e.g. 3600).
    `team_keys` maps each configured team to its virtual keys' ids (for `team_id`)."""
    since = _int(query, "since", 0)
    until = _int(query, "until", 0)
    last = _int(query, "last", 1)
    if last is not None:
        since = int(time.time() * 1000) - last * 1000
    elif since is None and default_window_ms is not None:
        since = int(time.time() * 1000) - default_window_ms
    if since is not None and until is not None and until <= since:
        raise FilterError("until", "must be later than since")
    statuses = _list(query, "status")
    for s in statuses:
        if s not in STATUS_CLASSES and not (s.isascii() and s.isdigit() and len(s) <= 3):
            raise FilterError("status", f"expected one of {', '.join(STATUS_CLASSES)} or an HTTP code, got {s!r}")
    stream_raw = query.get("stream")
    stream = None
    if stream_raw not in (None, ""):
        if stream_raw.lower() not in ("true", "false", "1", "0"):
            raise FilterError("stream", f"expected true or false, got {stream_raw!r}")
        stream = stream_raw.lower() in ("true", "1")
    text = (query.get("q") or "").strip() or None
    cache = (query.get("cache") or "").strip().lower() or None
    if cache is not None and cache not in CACHE_VALUES:
        raise FilterError("cache", f"expected one of {', '.join(CACHE_VALUES)}, got {cache!r}")
    guardrail = (query.get("guardrail") or "").strip() or None
    if guardrail is not None and (len(guardrail) > GUARDRAIL_NAME_LIMIT or not guardrail.isprintable()):
        raise FilterError("guardrail", f"expected a rule name of at most {GUARDRAIL_NAME_LIMIT} printable characters")
    action = (query.get("guardrail_action") or "").strip().lower() or None
    if action is not None and action not in GUARDRAIL_ACTIONS:
        raise FilterError("guardrail_action", f"expected one of {', '.join(GUARDRAIL_ACTIONS)}, got {action[:40]!r}")
    return LogFilter(
        since_ms=since,
        until_ms=until,
        providers=_list(query, "provider"),
        models=_list(query, "model"),
        statuses=statuses,
        stream=stream,
        endpoint=query.get("endpoint") or None,
        min_latency_us=_ms_to_us(_int(query, "min_latency_ms", 0)),
        max_latency_us=_ms_to_us(_int(query, "max_latency_ms", 0)),
        text=text,
        virtual_key_ids=_virtual_keys(query, team_keys),
        cache=cache,
        guardrail=guardrail,
        guardrail_action=action,
    )


@dataclass(frozen=True, slots=True)
class Page:
    sort: str = "ts"
    descending: bool = True
    limit: int = 50
    offset: int = 0


def parse_page(query: Mapping[str, str]) -> Page:
    sort = query.get("sort", "ts")
    if sort not in SORTS:
        raise FilterError("sort", f"expected one of {', '.join(SORTS)}, got {sort!r}")
    order = query.get("order", "desc").lower()
    if order not in ("asc", "desc"):
        raise FilterError("order", f"expected asc or desc, got {order!r}")
    limit = _int(query, "limit", 1) or 50
    if limit > MAX_LIMIT:
        raise FilterError("limit", f"must be at most {MAX_LIMIT}, got {limit}")
    return Page(sort=sort, descending=order == "desc", limit=limit, offset=_int(query, "offset", 0) or 0)

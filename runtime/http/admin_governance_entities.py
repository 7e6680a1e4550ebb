"""/api/governance/teams, /customers, /budgets, /rate-limits: list, create, read, update, delete.

Go Bifrost's paths and answer shapes: `GET /api/governance/teams` -> `{"teams": [...], "count": n}`,
`GET .../teams/{id}` -> `{"team": {...}}`, `POST` -> 201 `{"message", "team"}`, `PUT` -> `{"message",
"team"}`, `DELETE` -> `{"message"}`. The entities are config.json's `governance` block, edited through the
config store like every admin edit (runtime/http/admin_providers.py `_edit`: validated by the loader, so a
bad field is a 400 whose `param` is its config path; written atomically; applied to this worker at once
and to the others by the file watcher), so a change is live without a restart.

Answers carry what the UI draws usage bars from: a budget's `current_usage` (dollars), `last_reset` (its
window's start) and `reset_at` (its end); a rate limit's `{token,request}_current_usage`, `_last_reset`,
`_reset_at` (runtime/http/admin_governance_usage.py). Teams, customers and virtual keys embed their
`budget` and `rate_limit` that way (Go's "populated relationships").

Go's create/update bodies may carry an inline `budget` / `rate_limit` object instead of an id: for a
team, customer or virtual key it updates the entity's own budget (rate limit) in place, or creates one
(a new id) and links it. Deleting an entity something still refers to is a 409 naming the referrers
(config.json cannot hold a dangling reference); delete or relink them first.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from runtime.governance.entities import GovernanceConfig
from runtime.http.admin_common import AdminBadRequest, fail, json_response, read_object
from runtime.http.admin_governance_usage import budget_usage, limits_of, rate_limit_usage
from runtime.http.admin_providers import _edit
from runtime.http.keys import GATEWAY
from runtime.stores.config import Raw

PREFIX = "/api/governance"
J = dict[str, Any]
BUDGET_FIELDS = ("max_limit", "reset_duration", "calendar_aligned")
RATE_LIMIT_FIELDS = ("token_max_limit", "token_reset_duration", "request_max_limit", "request_reset_duration")


@dataclass(frozen=True, slots=True)
class Kind:
    """One governed entity table of config.json's `governance` block."""

    section: str  # governance.<section>
    route: str  # /api/governance/<route>
    one: str  # the answer's key for one entity
    title: str  # for messages
    fields: tuple[str, ...]  # what a client may set (besides `id` at creation)
    required: tuple[str, ...]  # at creation
    inline: bool  # accepts Go's inline `budget` / `rate_limit` objects
    filters: tuple[str, ...] = ()  # list query parameters matched exactly (Go's)


BUDGETS = Kind("budgets", "budgets", "budget", "Budget", BUDGET_FIELDS, ("max_limit", "reset_duration"), False)
RATE_LIMITS = Kind("rate_limits", "rate-limits", "rate_limit", "Rate limit", RATE_LIMIT_FIELDS, (), False)
CUSTOMERS = Kind(
    "customers", "customers", "customer", "Customer", ("name", "budget_id", "rate_limit_id"), ("name",), True
)
TEAMS = Kind(
    "teams",
    "teams",
    "team",
    "Team",
    ("name", "customer_id", "budget_id", "rate_limit_id"),
    ("name",),
    True,
    ("customer_id",),
)
KINDS = (BUDGETS, RATE_LIMITS, CUSTOMERS, TEAMS)

# Who may refer to an entity of each kind: (section, field, nested provider_configs too).
_REFERRERS: dict[str, tuple[tuple[str, str], ...]] = {
    "budgets": (("customers", "budget_id"), ("teams", "budget_id"), ("virtual_keys", "budget_id")),
    "rate_limits": (("customers", "rate_limit_id"), ("teams", "rate_limit_id"), ("virtual_keys", "rate_limit_id")),
    "customers": (("teams", "customer_id"), ("virtual_keys", "customer_id")),
    "teams": (("virtual_keys", "team_id"),),
}


# -- config.json access --------------------------------------------------------------------------------
def gov_of(raw: Raw) -> dict[str, Any]:
    gov = raw.setdefault("governance", {})
    if not isinstance(gov, dict):
        raise AdminBadRequest("config.json `governance` is not an object; fix the file first")
    return gov


def table(raw: Raw, section: str) -> list[Any]:
    items = gov_of(raw).setdefault(section, [])
    if not isinstance(items, list):
        raise AdminBadRequest(f"config.json `governance.{section}` is not a list; fix the file first")
    return items


def find(items: list[Any], ident: str, kind: Kind) -> int:
    for i, entry in enumerate(items):
        if isinstance(entry, dict) and entry.get("id") == ident:
            return i
    raise AdminBadRequest(f"no {kind.title.lower()} with id {ident!r}", status=404, param="id", code="not_found")


def _running_raw(request: web.Request, section: str) -> list[dict[str, Any]]:
    gov = request.app[GATEWAY].config.raw.get("governance")
    items = gov.get(section) if isinstance(gov, dict) else None
    return [e for e in items or () if isinstance(e, dict)] if isinstance(items, list) else []


def referrers(raw: Raw, section: str, ident: str) -> list[str]:
    """Paths of the entries that refer to `governance.<section>` entry `ident` (for a 409)."""
    gov = raw.get("governance")
    if not isinstance(gov, dict):
        return []
    found: list[str] = []
    for other, field in _REFERRERS.get(section, ()):
        items = gov.get(other)
        for i, entry in enumerate(items if isinstance(items, list) else ()):
            if not isinstance(entry, dict):
                continue
            if entry.get(field) == ident:
                found.append(f"governance.{other}[{i}] ({entry.get('id')})")
            if other == "virtual_keys" and field in ("budget_id", "rate_limit_id"):
                pcs = entry.get("provider_configs")
                for j, pc in enumerate(pcs if isinstance(pcs, list) else ()):
                    if isinstance(pc, dict) and pc.get(field) == ident:
                        found.append(f"governance.virtual_keys[{i}].provider_configs[{j}] ({entry.get('id')})")
    return found


# -- bodies --------------------------------------------------------------------------------------------
def body_fields(body: dict[str, Any], allowed: tuple[str, ...], inline: bool) -> dict[str, Any]:
    """The settable fields of a request body; unknown ones are a 400 naming the field."""
    extra = ("id", "budget", "rate_limit") if inline else ("id",)
    unknown = sorted(k for k in body if k not in allowed and k not in extra)
    if unknown:
        raise AdminBadRequest(f"unknown field {unknown[0]!r}; fields: {', '.join(allowed)}", param=unknown[0])
    return {k: body[k] for k in allowed if k in body}


def merge(entry: dict[str, Any], fields: dict[str, Any]) -> None:
    """Set `fields` on `entry`; a null value removes the field (Go's "null to clear")."""
    for k, v in fields.items():
        if v is None:
            entry.pop(k, None)
        else:
            entry[k] = v


def new_id(body: dict[str, Any]) -> str:
    ident = body.get("id")
    if ident is None:
        return str(uuid.uuid4())
    if not isinstance(ident, str) or not ident:
        raise AdminBadRequest("id must be a non-empty string", param="id")
    return ident


def apply_inline(raw: Raw, entry: dict[str, Any], body: dict[str, Any]) -> None:
    """Go's inline `budget` / `rate_limit` objects: update the entity's own, or create and link one."""
    for key, section, id_field, allowed in (
        ("budget", "budgets", "budget_id", BUDGET_FIELDS),
        ("rate_limit", "rate_limits", "rate_limit_id", RATE_LIMIT_FIELDS),
    ):
        spec = body.get(key)
        if spec is None:
            continue
        if not isinstance(spec, dict):
            raise AdminBadRequest(f"{key} must be an object", param=key)
        unknown = sorted(k for k in spec if k not in allowed and k != "id")
        if unknown:
            raise AdminBadRequest(
                f"unknown field {unknown[0]!r}; fields: {', '.join(allowed)}", param=f"{key}.{unknown[0]}"
            )
        items = table(raw, section)
        current = entry.get(id_field)
        index = next(
            (i for i, e in enumerate(items) if isinstance(e, dict) and current and e.get("id") == current), None
        )
        if index is not None:
            merge(items[index], {k: spec[k] for k in allowed if k in spec})
            continue
        ident = new_id(spec)
        if any(isinstance(e, dict) and e.get("id") == ident for e in items):
            raise AdminBadRequest(
                f"{section[:-1].replace('_', ' ')} {ident!r} already exists", f"{key}.id", 409, "already_exists"
            )
        created = {"id": ident}
        merge(created, {k: spec[k] for k in allowed if k in spec})
        items.append(created)
        entry[id_field] = ident


def restart_note(request: web.Request) -> dict[str, Any]:
    """Governance added to a gateway that started without it waits for a restart (no plugin runs, so an
    ungoverned gateway pays nothing per request): say so in the answer."""
    plugins = request.app[GATEWAY].hooks.plugins
    if any(getattr(p, "name", "") == "governance" for p in plugins):
        return {}
    return {"restart_required": True}


# -- views ---------------------------------------------------------------------------------------------
class Views:
    """Answers for one request: entries with their usage, each budget/rate limit read once."""

    def __init__(self, request: web.Request) -> None:
        gw = request.app[GATEWAY]
        self.gov: GovernanceConfig = gw.config.governance or GovernanceConfig()
        self.limits = limits_of(request.app)
        self.request = request
        self._budgets: dict[str, dict[str, Any]] = {}
        self._rates: dict[str, dict[str, Any]] = {}

    def _entry(self, section: str, ident: str) -> dict[str, Any] | None:
        for e in _running_raw(self.request, section):
            if e.get("id") == ident:
                return e
        return None

    async def budget(self, ident: Any, entry: dict[str, Any] | None = None) -> dict[str, Any] | None:
        if not isinstance(ident, str) or not ident:
            return None
        if ident not in self._budgets:
            entry = entry or self._entry("budgets", ident)
            if entry is None:
                return None
            view = {"id": ident, "calendar_aligned": False, **entry}
            view.update(await budget_usage(self.limits, self.gov.budgets.get(ident)))
            self._budgets[ident] = view
        return self._budgets[ident]

    async def rate_limit(self, ident: Any, entry: dict[str, Any] | None = None) -> dict[str, Any] | None:
        if not isinstance(ident, str) or not ident:
            return None
        if ident not in self._rates:
            entry = entry or self._entry("rate_limits", ident)
            if entry is None:
                return None
            view: dict[str, Any] = {"id": ident, **{k: None for k in RATE_LIMIT_FIELDS}, **entry}
            view.update(await rate_limit_usage(self.limits, self.gov.rate_limits.get(ident)))
            self._rates[ident] = view
        return self._rates[ident]

    async def owner(self, entry: dict[str, Any]) -> dict[str, Any]:
        """A team, customer or virtual key with its `budget` and `rate_limit` embedded."""
        view = dict(entry)
        view["budget"] = await self.budget(entry.get("budget_id"))
        view["rate_limit"] = await self.rate_limit(entry.get("rate_limit_id"))
        return view

    async def of(self, kind: Kind, entry: dict[str, Any]) -> dict[str, Any]:
        if kind is BUDGETS:
            return await self.budget(entry.get("id"), entry) or dict(entry)
        if kind is RATE_LIMITS:
            return await self.rate_limit(entry.get("id"), entry) or dict(entry)
        view = await self.owner(entry)
        if kind is TEAMS:
            customer = self._entry("customers", entry.get("customer_id") or "")
            view["customer"] = {"id": customer["id"], "name": customer.get("name")} if customer else None
        elif kind is CUSTOMERS:
            view["teams"] = [
                {"id": t.get("id"), "name": t.get("name")}
                for t in _running_raw(self.request, "teams")
                if t.get("customer_id") == entry.get("id")
            ]
        return view


# -- handlers ------------------------------------------------------------------------------------------
Handler = Callable[[web.Request], Awaitable[web.Response]]
MAX_PAGE = 1000


def _number(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) > maximum:
        raise AdminBadRequest(f"{name} must be a whole number from 0 to {maximum}, got {raw!r}", param=name)
    return int(raw)


def page(request: web.Request, entries: list[dict[str, Any]], filters: tuple[str, ...]) -> tuple[list[Any], J]:
    """Go's list parameters: equality `filters` (team_id, customer_id), `search` (a case-insensitive part of
    the name or id), `limit` and `offset`. Returns (the page, Go's `total_count`/`limit`/`offset` fields)."""
    for field in filters:
        wanted = request.query.get(field)
        if wanted:
            entries = [e for e in entries if e.get(field) == wanted]
    search = (request.query.get("search") or "").strip().casefold()
    if search:
        entries = [
            e
            for e in entries
            if search in str(e.get("name", "")).casefold() or search in str(e.get("id", "")).casefold()
        ]
    limit = _number(request, "limit", 0, MAX_PAGE)  # 0: all (config.json tables are small)
    offset = _number(request, "offset", 0, 10**9)
    shown = entries[offset : offset + limit] if limit else entries[offset:]
    return shown, {"total_count": len(entries), "limit": limit, "offset": offset}


def _list(kind: Kind) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        try:
            entries, paging = page(request, _running_raw(request, kind.section), kind.filters)
        except AdminBadRequest as exc:
            return exc.response()
        views = Views(request)
        items = [await views.of(kind, e) for e in entries]
        return json_response({kind.section: items, "count": len(items), **paging})

    return handler


def _get(kind: Kind) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        ident = request.match_info["id"]
        for entry in _running_raw(request, kind.section):
            if entry.get("id") == ident:
                return json_response({kind.one: await Views(request).of(kind, entry)})
        return fail(f"no {kind.title.lower()} with id {ident!r}", 404, code="not_found", param="id")

    return handler


def _create(kind: Kind) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        try:
            body = await read_object(request)
            fields = body_fields(body, kind.fields, kind.inline)
            for name in kind.required:
                if name not in fields:
                    raise AdminBadRequest(f"{name} is required", param=name)
            ident = new_id(body)
            entry: dict[str, Any] = {"id": ident}
            merge(entry, fields)

            def change(raw: Raw) -> None:
                items = table(raw, kind.section)
                if any(isinstance(e, dict) and e.get("id") == ident for e in items):
                    raise AdminBadRequest(f"{kind.title.lower()} {ident!r} already exists", "id", 409, "already_exists")
                if kind.inline:
                    apply_inline(raw, entry, body)
                items.append(entry)

            await _edit(request, change)
        except AdminBadRequest as exc:
            return exc.response()
        view = await Views(request).of(kind, entry)
        answer = {"message": f"{kind.title} created successfully", kind.one: view, **restart_note(request)}
        return json_response(answer, status=201)

    return handler


def _update(kind: Kind) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        ident = request.match_info["id"]
        updated: dict[str, Any] = {}
        try:
            body = await read_object(request)
            fields = body_fields(body, kind.fields, kind.inline)
            if "id" in body and body["id"] != ident:
                raise AdminBadRequest("id cannot be changed", param="id")

            def change(raw: Raw) -> None:
                items = table(raw, kind.section)
                i = find(items, ident, kind)
                entry = dict(items[i])
                merge(entry, fields)
                if kind.inline:
                    apply_inline(raw, entry, body)
                items[i] = entry
                updated.update(entry)

            await _edit(request, change)
        except AdminBadRequest as exc:
            return exc.response()
        view = await Views(request).of(kind, updated)
        return json_response({"message": f"{kind.title} updated successfully", kind.one: view})

    return handler


def _delete(kind: Kind) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        ident = request.match_info["id"]
        try:

            def change(raw: Raw) -> None:
                items = table(raw, kind.section)
                i = find(items, ident, kind)
                users = referrers(raw, kind.section, ident)
                if users:
                    shown = ", ".join(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
                    raise AdminBadRequest(
                        f"{kind.title.lower()} {ident!r} is in use by {shown}; remove those references first",
                        status=409,
                        param="id",
                        code="in_use",
                    )
                items.pop(i)

            await _edit(request, change)
        except AdminBadRequest as exc:
            return exc.response()
        return json_response({"message": f"{kind.title} deleted successfully"})

    return handler


def add_routes(app: web.Application, wrap: Any) -> None:
    r = app.router
    for kind in KINDS:
        base = f"{PREFIX}/{kind.route}"
        r.add_get(base, wrap(_list(kind)))
        r.add_post(base, wrap(_create(kind)))
        r.add_get(base + "/{id}", wrap(_get(kind)))
        r.add_put(base + "/{id}", wrap(_update(kind)))
        r.add_delete(base + "/{id}", wrap(_delete(kind)))

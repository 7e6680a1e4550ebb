"""/api/guardrails: view and edit config.json's `guardrails_config` (docs/guardrails-admin.md), and try text.

- GET shows the block as stored, secrets masked: every webhook `headers` value and any config field named
  like a secret (`api_key`, `token`, ...) becomes a mask; an `env.NAME` reference stays the reference (the
  name is not a secret, its value is never read here). It also lists the detector kinds and what CEL sees.
- PUT replaces the whole block; the item routes (rules, providers) add, replace or delete one entry. Every
  edit goes through the same path as the other admin edits (`_edit`: validate the whole document with
  field paths, write config.json atomically, apply at once). A value still shown as the mask keeps the
  stored secret, so a GET then PUT round trip never writes the mask into the file.
- POST /api/guardrails/test runs pasted text through the engine's `try_text` (the saved config, or an
  unsaved draft) and answers what fired, where, and the text after redaction: spans and types, never a
  matched value in any message of ours.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from runtime.config.load import ConfigError
from runtime.core.gateway import Gateway
from runtime.guardrails.config import PATH, REQUEST_FIELDS
from runtime.guardrails.kinds import KINDS
from runtime.guardrails.types import STAGES, GuardrailsConfig
from runtime.http.admin_common import ADMIN, AdminBadRequest, fail, json_response, read_object
from runtime.http.admin_providers import _edit
from runtime.http.admin_views import MASK, SECRET_FIELD
from runtime.http.keys import GATEWAY
from runtime.stores.config import Raw

RULES = "guardrail_rules"
PROVIDERS = "guardrail_providers"
SECRET_MAPS = frozenset({"headers"})  # every value of a webhook's headers may be a credential
MAX_TEXT_BYTES = 256 * 1024  # the console's text, UTF-8
MAX_TEST_BODY = 1024 * 1024  # text (JSON-escaped) + a draft block
TEST_FIELDS = frozenset({"text", "stage", "request", "guardrails_config"})


# -- masking ------------------------------------------------------------------------------------------
def _hide(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("env."):
        return value  # a reference: the name is shown, its value never read
    if value is None or value == "":
        return value
    return MASK


def _masked(field: str, value: Any) -> Any:
    if field in SECRET_MAPS and isinstance(value, dict):
        return {k: _hide(v) for k, v in value.items()}
    if field == "url" and isinstance(value, str):
        return _url_masked(value)
    if SECRET_FIELD.search(field) and not isinstance(value, (bool, int, float)):
        return _hide(value)
    if isinstance(value, dict):
        return {k: _masked(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(field, v) for v in value]
    return value


def _url_masked(url: str) -> str:
    """A webhook URL with what may be a credential masked: the password of a user:password@ part, a lone
    user part (a token used as the user: `https://TOKEN@host`), and every query value (Azure Functions'
    `?code=…`, `?key=…`, signed URLs). Scheme, host, port, path and query names stay readable."""
    try:
        parts = urlsplit(url)
        username, password = parts.username, parts.password
    except ValueError:
        return MASK  # not a URL we can take apart: show none of it
    netloc = parts.netloc
    if username is not None or password is not None:
        host = netloc.rpartition("@")[2]
        netloc = f"{username}:{MASK}@{host}" if password else f"{MASK}@{host}"
    query = parts.query
    if query:
        query = "&".join(
            f"{name}={MASK}" if sep else name for name, sep, _ in (item.partition("=") for item in query.split("&"))
        )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def masked_block(block: Mapping[str, Any]) -> dict[str, Any]:
    """The block as the API shows it: same shape, each provider's secrets masked."""
    out = copy.deepcopy(dict(block))
    providers = out.get(PROVIDERS)
    if isinstance(providers, list):
        for item in providers:
            if isinstance(item, dict) and isinstance(item.get("config"), dict):
                item["config"] = {k: _masked(k, v) for k, v in item["config"].items()}
    return out


def _restore(field: str, new: Any, old: Any) -> Any:
    """`new` with every value the client sent back exactly as the API shows the stored one (a mask)
    replaced by the stored value; anything else is a new value and is kept."""
    if old is None or new == old:
        return new
    if isinstance(new, dict) and isinstance(old, dict):
        if field in SECRET_MAPS:
            return {k: old[k] if k in old and v == _hide(old[k]) else v for k, v in new.items()}
        return {k: _restore(k, v, old.get(k)) for k, v in new.items()}
    return old if new == _masked(field, old) else new


def restore_secrets(block: Mapping[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """A block from the client with masked secrets put back from the stored provider of the same id."""
    out = dict(block)
    providers = out.get(PROVIDERS)
    if not isinstance(providers, list):
        return out
    by_id = {p["id"]: p for p in stored.get(PROVIDERS) or [] if isinstance(p, dict) and isinstance(p.get("id"), int)}
    restored = []
    for item in providers:
        pid = item.get("id") if isinstance(item, dict) else None
        old = by_id.get(pid) if isinstance(pid, int) else None  # a bad id is the validation's to report
        if isinstance(item, dict) and isinstance(old, dict) and isinstance(item.get("config"), dict):
            item = {**item, "config": _restore("config", item["config"], old.get("config"))}
        restored.append(item)
    out[PROVIDERS] = restored
    return out


# -- views --------------------------------------------------------------------------------------------
def _stored(request: web.Request) -> dict[str, Any]:
    block = request.app[ADMIN].store.raw.get(PATH)
    return block if isinstance(block, dict) else {}


def kinds_view() -> list[dict[str, Any]]:
    return [
        {
            "name": k.name,
            "remote": k.remote,
            "summary": k.summary,
            "default_timeout_s": k.default_timeout_s,
            "default_action": k.default_action,
        }
        for k in KINDS.values()
    ]


def view(request: web.Request) -> dict[str, Any]:
    return {
        "guardrails_config": masked_block(_stored(request)),
        "kinds": kinds_view(),
        "cel": {
            "request_fields": list(REQUEST_FIELDS),
            "variables": ["request", "stage", "findings"],
            "finding_fields": ["type", "provider", "policy", "count"],
        },
    }


async def get_guardrails(request: web.Request) -> web.Response:
    return json_response(view(request))


async def put_guardrails(request: web.Request) -> web.Response:
    try:
        body = await read_object(request)
        unknown = sorted(set(body) - {PATH})
        block = body.get(PATH)
        if unknown or not isinstance(block, dict):
            raise AdminBadRequest(
                'expected {"guardrails_config": {"guardrail_providers": [...], "guardrail_rules": [...]}}',
                param=unknown[0] if unknown else PATH,
            )

        def change(raw: Raw) -> None:
            old = raw.get(PATH)
            if block:
                raw[PATH] = restore_secrets(block, old if isinstance(old, dict) else {})
            else:
                raw.pop(PATH, None)  # nothing left: no empty block in the file

        await _edit(request, change)
    except AdminBadRequest as exc:
        return exc.response()
    return json_response(view(request))


# -- one rule or provider -----------------------------------------------------------------------------
def _item_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isdigit() or len(text) > 18:
        raise AdminBadRequest(f"id must be a whole number, got {text[:40]!r}", param="id", status=404, code="not_found")
    return int(text)


def _list(block: Mapping[str, Any], key: str) -> list[Any]:
    items = block.get(key)
    return list(items) if isinstance(items, list) else []


def _find(items: list[Any], item_id: int) -> int | None:
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("id") == item_id and not isinstance(item.get("id"), bool):
            return i
    return None


def _next_id(items: list[Any]) -> int:
    ids = [it["id"] for it in items if isinstance(it, dict) and isinstance(it.get("id"), int)]
    return max(ids, default=0) + 1


def _noun(key: str) -> str:
    return "rule" if key == RULES else "provider"


async def _save_item(request: web.Request, key: str, item_id: int | None) -> web.Response:
    """POST (item_id None: a new entry, its id given or the next free one) or PUT (replace entry item_id)."""
    noun = _noun(key)
    try:
        item = await read_object(request)
        if item_id is not None:
            given = item.get("id", item_id)
            if given != item_id:
                raise AdminBadRequest(f"id {given!r} in the body differs from {item_id} in the path", param="id")
            item["id"] = item_id

        def change(raw: Raw) -> Any:
            old = raw.get(PATH)
            block: dict[str, Any] = copy.deepcopy(old) if isinstance(old, dict) else {}
            items = _list(block, key)
            if item_id is None:
                if "id" not in item:
                    item["id"] = _next_id(items)
                elif _find(items, item["id"]) is not None:
                    raise AdminBadRequest(
                        f"a guardrail {noun} with id {item['id']} already exists; replace it with PUT",
                        status=409,
                        code="already_exists",
                        param="id",
                    )
                items.append(item)
            else:
                at = _find(items, item_id)
                if at is None:
                    raise AdminBadRequest(f"no guardrail {noun} has id {item_id}", status=404, code="not_found")
                items[at] = item
            block[key] = items
            raw[PATH] = restore_secrets(block, old if isinstance(old, dict) else {})
            return item["id"]  # checked by the validation that follows (a bad id is a 400 with its path)

        _, saved = await _edit(request, change)
    except AdminBadRequest as exc:
        return exc.response()
    return _item_response(request, key, saved, 201 if item_id is None else 200)


def _item_response(request: web.Request, key: str, item_id: Any, status: int) -> web.Response:
    whole = view(request)
    items = _list(whole["guardrails_config"], key)
    at = _find(items, item_id)
    return json_response({_noun(key): None if at is None else items[at], **whole}, status=status)


async def _delete_item(request: web.Request, key: str) -> web.Response:
    noun = _noun(key)
    try:
        item_id = _item_id(request)

        def change(raw: Raw) -> None:
            old = raw.get(PATH)
            block: dict[str, Any] = copy.deepcopy(old) if isinstance(old, dict) else {}
            items = _list(block, key)
            at = _find(items, item_id)
            if at is None:
                raise AdminBadRequest(f"no guardrail {noun} has id {item_id}", status=404, code="not_found")
            if key == PROVIDERS:
                users = [
                    str(r.get("name") or r.get("id"))
                    for r in _list(block, RULES)
                    if isinstance(r, dict) and item_id in (r.get("provider_config_ids") or [])
                ]
                if users:
                    raise AdminBadRequest(
                        f"guardrail provider {item_id} is used by rule(s) {', '.join(users)}: "
                        "remove it from them (or delete them) first",
                        status=409,
                        code="provider_in_use",
                        param="id",
                    )
            del items[at]
            block[key] = items
            if any(_list(block, k) for k in (RULES, PROVIDERS)):
                raw[PATH] = block
            else:
                raw.pop(PATH, None)

        await _edit(request, change)
    except AdminBadRequest as exc:
        return exc.response()
    return json_response({"deleted": item_id, **view(request)})


def _item_routes(key: str) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    async def create(request: web.Request) -> web.Response:
        return await _save_item(request, key, None)

    async def update(request: web.Request) -> web.Response:
        try:
            item_id = _item_id(request)
        except AdminBadRequest as exc:
            return exc.response()
        return await _save_item(request, key, item_id)

    async def delete(request: web.Request) -> web.Response:
        return await _delete_item(request, key)

    return create, update, delete


# -- the test console ---------------------------------------------------------------------------------
def _checked_request(value: Any) -> dict[str, Any]:
    """The console's optional request fields (what CEL sees as `request.*`), type-checked."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AdminBadRequest("request must be an object of the fields CEL sees (model, provider, ...)", "request")
    out: dict[str, Any] = {}
    for k, v in value.items():
        default = REQUEST_FIELDS.get(k)
        if k not in REQUEST_FIELDS:
            raise AdminBadRequest(f"request.{k} is not a field CEL sees; known: {', '.join(REQUEST_FIELDS)}", "request")
        if k == "headers":
            if not isinstance(v, dict) or not all(isinstance(x, str) for x in [*v, *v.values()]):
                raise AdminBadRequest("request.headers must be an object of strings", "request.headers")
            v = {name.lower(): text for name, text in v.items()}
        elif isinstance(default, bool):
            if not isinstance(v, bool):
                raise AdminBadRequest(f"request.{k} must be true or false", f"request.{k}")
        elif isinstance(default, str):
            if not isinstance(v, str):
                raise AdminBadRequest(f"request.{k} must be a string", f"request.{k}")
        elif not isinstance(v, list):
            raise AdminBadRequest(f"request.{k} must be a list", f"request.{k}")
        out[k] = v
    return out


def _draft(block: Any, stored: Mapping[str, Any]) -> GuardrailsConfig:
    from runtime.guardrails.config import parse_guardrails

    if not isinstance(block, dict):
        raise AdminBadRequest("guardrails_config must be an object (the draft to try)", param=PATH)
    try:
        parsed = parse_guardrails(restore_secrets(block, stored), [])
    except ConfigError as exc:
        raise AdminBadRequest(exc.args[0], param=exc.path or None, code="invalid_config") from None
    return parsed if parsed is not None else _EMPTY


_EMPTY = GuardrailsConfig(MappingProxyType({}), ())


async def _close_detectors(config: GuardrailsConfig) -> None:
    """A draft's remote detectors may have opened sessions (webhooks): close them, the draft is gone."""
    for provider in config.providers.values():
        close = getattr(provider.detector, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):  # best effort: the answer is already computed
                await close()


async def test_text(request: web.Request) -> web.Response:
    length = request.content_length
    if length is not None and length > MAX_TEST_BODY:
        return fail(f"the request body is larger than {MAX_TEST_BODY} bytes", 413, code="too_large")
    try:
        body = await read_object(request)
        unknown = sorted(set(body) - TEST_FIELDS)
        if unknown:
            raise AdminBadRequest(f"unknown field {unknown[0]}; known: {', '.join(sorted(TEST_FIELDS))}", unknown[0])
        text = body.get("text")
        if not isinstance(text, str):
            raise AdminBadRequest("text is required: the text to check", param="text")
        if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
            raise AdminBadRequest(
                f"text is larger than {MAX_TEXT_BYTES // 1024} KB", param="text", status=413, code="too_large"
            )
        stage = body.get("stage", "input")
        if stage not in STAGES:
            raise AdminBadRequest(f"stage must be one of {', '.join(STAGES)}", param="stage")
        fields = _checked_request(body.get("request"))
        gw: Gateway = request.app[GATEWAY]
        draft = PATH in body
        config = _draft(body[PATH], _stored(request)) if draft else (gw.config.guardrails or _EMPTY)
    except AdminBadRequest as exc:
        return exc.response()
    from runtime.guardrails.engine import try_text

    try:
        result = await try_text(config, gw, text, stage, fields)
    finally:
        if draft:
            await _close_detectors(config)
    return json_response({**result, "draft": draft})


def add_routes(app: web.Application, wrap: Callable[[Any], Any]) -> None:
    r = app.router
    r.add_get("/api/guardrails", wrap(get_guardrails))
    r.add_put("/api/guardrails", wrap(put_guardrails))
    r.add_post("/api/guardrails/test", wrap(test_text))
    for key, path in ((RULES, "rules"), (PROVIDERS, "providers")):
        create, update, delete = _item_routes(key)
        r.add_post(f"/api/guardrails/{path}", wrap(create))
        r.add_put(f"/api/guardrails/{path}/{{id}}", wrap(update))
        r.add_delete(f"/api/guardrails/{path}/{{id}}", wrap(delete))

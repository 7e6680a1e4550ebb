"""What CEL sees of one request (runtime/guardrails/config.py REQUEST_FIELDS), built lazily.

A rule reads a few `request.<field>` names (RuleSettings.request_fields): only those are computed, once
per request (a `RequestView` caches them), and the routing targets are resolved only when a rule reads
`model`, `provider` or `providers`. Credentials never reach CEL: the authorization and API-key headers
and cookies are dropped from `request.headers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runtime.guardrails.text import message_views

HIDDEN_HEADERS = frozenset(
    {"authorization", "x-api-key", "api-key", "x-goog-api-key", "x-bf-vk", "cookie", "proxy-authorization"}
)
ROUTED = frozenset({"model", "provider", "providers"})
CALLER = frozenset({"virtual_key", "virtual_key_name", "team", "team_name", "customer"})


class RequestView:
    """The fields of `request` for one request, each computed at most once."""

    __slots__ = ("_ctx", "_gateway", "_targets", "_values", "draws")

    def __init__(self, ctx: Any, gateway: Any) -> None:
        self._ctx = ctx
        self._gateway = gateway
        self._values: dict[str, Any] = {}
        self._targets: list[tuple[str, str]] = []  # (provider, model) of every target, primary first
        self.draws: dict[int, bool] = {}  # rule id -> in this request's sample (sampling_rate < 100)

    def targets(self) -> list[tuple[str, str]]:
        """(provider, model) of every target the request may go to: the primary, then its fallbacks. A rule
        reading `request.provider` / `request.model` is evaluated for each (runtime/guardrails/engine.py):
        a weighted choice or a fallback may send the request to any of them."""
        self.get("provider")
        return self._targets

    def with_target(self, provider: str, model: str) -> TargetView:
        return TargetView(self, provider, model)

    def get(self, name: str) -> Any:
        values = self._values
        if name not in values:
            if name in ROUTED:
                self._route()
            elif name in CALLER:
                self._caller()
            else:
                values[name] = self._simple(name)
        return values[name]

    def fields(self, names: frozenset[str]) -> dict[str, Any]:
        return {name: self.get(name) for name in names}

    def _simple(self, name: str) -> Any:
        ctx = self._ctx
        if name == "model_requested":
            model = ctx.body.get("model") if isinstance(ctx.body, dict) else None
            return cel_text(ctx.model_requested or (model if isinstance(model, str) else ""))
        if name == "headers":
            return {cel_text(k.lower()): cel_text(v) for k, v in ctx.headers.items() if k.lower() not in HIDDEN_HEADERS}
        if name == "messages":
            return [{k: cel_text(v) for k, v in m.items()} for m in message_views(ctx.body)]
        if name == "endpoint":
            return ctx.endpoint or ""
        if name == "ingress":
            return ctx.ingress or ""
        if name == "stream":
            return bool(ctx.stream)
        raise KeyError(name)

    def _route(self) -> None:
        """Every target the router may use for this request, without choosing: a model group's targets
        heaviest first (its weighted round-robin is not advanced: the request's own routing makes the one
        choice), then the client's fallbacks. ctx and its body are left as they were. An unknown model gives
        empty values; the request's own routing raises the error later."""
        ctx, values = self._ctx, self._values
        values.update(model="", provider="", providers=[])
        gateway = self._gateway
        body = ctx.body
        if gateway is None or not isinstance(body, dict):
            return
        router = gateway.router
        model = body.get("model")
        fallbacks = body.get("fallbacks")
        try:
            if not isinstance(model, str) or not model:
                return
            targets = list(router.resolve_fallback(model))  # a group: all its targets, no choice made
            if isinstance(fallbacks, list):
                for fallback in fallbacks:
                    if isinstance(fallback, str) and fallback:
                        targets.extend(router.resolve_fallback(fallback))
        except Exception:  # routing errors are the pipeline's to report
            return
        if targets:
            values["model"] = targets[0][1]
            values["provider"] = targets[0][0].name
            values["providers"] = [handle.name for handle, _ in targets]
            self._targets = list(dict.fromkeys((handle.name, model) for handle, model in targets))

    def _caller(self) -> None:
        values = self._values
        values.update(virtual_key="", virtual_key_name="", team="", team_name="", customer="")
        caller = self._ctx.caller
        if caller is None:
            return
        values["virtual_key"] = _text(getattr(caller, "virtual_key_id", ""))
        values["virtual_key_name"] = _text(getattr(caller, "virtual_key_name", ""))
        team_id = _text(getattr(caller, "team_id", ""))
        values["team"] = team_id
        values["customer"] = _text(getattr(caller, "customer_id", ""))
        governance = getattr(getattr(self._gateway, "config", None), "governance", None)
        if team_id and governance is not None:
            team = governance.team(team_id)
            values["team_name"] = _text(getattr(team, "name", "")) if team is not None else ""
            if not values["customer"] and team is not None:
                values["customer"] = _text(getattr(team, "customer_id", ""))


class TargetView:
    """A RequestView with `provider` and `model` set to one of the request's targets."""

    __slots__ = ("_model", "_provider", "_view")

    def __init__(self, view: RequestView, provider: str, model: str) -> None:
        self._view = view
        self._provider = provider
        self._model = model

    def get(self, name: str) -> Any:
        if name == "provider":
            return self._provider
        if name == "model":
            return self._model
        return self._view.get(name)

    def fields(self, names: frozenset[str]) -> dict[str, Any]:
        return {name: self.get(name) for name in names}


def cel_text(text: str) -> str:
    """`text` as CEL can take it. JSON allows a lone UTF-16 surrogate (`"\\ud800"`) that is not text: the CEL
    binding refuses the whole activation over one, and a rule whose expression then fails does not apply, so
    one such character would switch a rule off. It becomes U+FFFD here (for CEL only; the body is untouched)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def activation(request: Mapping[str, Any], stage: str, findings: list[dict[str, Any]]) -> dict[str, Any]:
    return {"request": dict(request), "stage": stage, "findings": findings}

"""Who may talk to the gateway from a web page: Host check, CORS and JSON-only bodies, in one check.

A gateway on loopback is open to this machine's *programs*, not to every page its browser visits.
Three browser tricks are closed here, for every route (inference, /api, /ws, /metrics, the UI); the
one middleware of runtime/http/edge.py runs the check before every handler:

- DNS rebinding: a page on `evil.example` re-resolves its name to 127.0.0.1 and is then same-origin
  with us. While listening on loopback the `Host` header must be a loopback name or IP (any port),
  else 403. Off loopback the admin token guards /api and the gateway may sit behind a proxy with its
  own name, so any Host is fine.
- Simple requests: a `text/plain` (or form) POST needs no CORS preflight, so a page could reach a
  provider with our keys. State-changing requests to inference routes and /api must carry
  `Content-Type: application/json` (415 otherwise), which a page can only send after a preflight.
- Cross-origin requests: `client.allowed_origins` (Go Bifrost's field; `"*"` or exact origins such
  as `https://app.example.com`) lists the pages that may call the gateway. Their preflights get a 204
  and their responses (streams included) `Access-Control-Allow-Origin`. A state-changing request from
  any other origin is refused (403); a GET from one is answered without CORS headers, so the browser
  keeps the answer from the page. /api and /ws are stricter: same-origin (the UI) or an origin listed
  exactly ("*" does not open the management API), for every method, since WebSockets have no CORS.

Everything is decided at start-up (the list is restart-only); a request without an Origin header
pays one header lookup (plus, on loopback, a set lookup for its Host; plus, for a POST, one for its
Content-Type). Errors use the route's own error shape (OpenAI, Anthropic or Gemini).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import ujson
from aiohttp import web

from runtime.config.model import GatewayConfig
from runtime.errors import GatewayError
from runtime.http import genai
from runtime.http.errors import error_response
from runtime.http.keys import GATEWAY
from runtime.wire import anthropic_ingress

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Renderer = Callable[[GatewayError, dict[str, str]], web.Response]

INFERENCE_PREFIXES = ("/v1/", "/openai/v1/", "/anthropic/", "/genai/")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The Content-Type values SDKs actually send, so the common case is one set lookup, not a parse.
_JSON_FAST = frozenset({"application/json", "application/json; charset=utf-8", "application/json;charset=utf-8"})
_ALLOW_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
_MAX_AGE = "600"
_KNOWN_HOSTS_CAP = 64  # distinct good Host values remembered; a flood of bad ones is never cached
_CORS_ORIGIN: web.RequestKey[str] | str
try:  # aiohttp >= 3.12 has typed request keys
    _CORS_ORIGIN = web.RequestKey("bifrost_cors_origin", str)
except AttributeError:  # pragma: no cover - older aiohttp
    _CORS_ORIGIN = "bifrost_cors_origin"


def is_loopback(host: str) -> bool:
    """Whether `host` (a listen address or a Host header's name) means this machine only."""
    host = host.lower().rstrip(".")
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name that may resolve anywhere: treat as exposed


def _host_name(host_header: str) -> str:
    """`127.0.0.1:8080` -> `127.0.0.1`, `[::1]:80` -> `::1`; '' when unparseable."""
    try:
        return urlsplit(f"//{host_header}").hostname or ""
    except ValueError:
        return ""


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    if content_type in _JSON_FAST:
        return True
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


# -- error shapes: a route answers in its own ingress's format ----------------------------------------
def _openai_error(err: GatewayError, headers: dict[str, str]) -> web.Response:
    return error_response(err, headers=headers)


def _anthropic_error(err: GatewayError, headers: dict[str, str]) -> web.Response:
    status, body = anthropic_ingress.error_status_and_body(err, {"is_bifrost_error": True, "extra_fields": {}})
    return web.Response(
        status=status, body=ujson.dumps(body).encode(), content_type="application/json", headers=headers
    )


def _genai_error(err: GatewayError, headers: dict[str, str]) -> web.Response:
    return genai.error_response(err, headers)


RENDERERS: tuple[tuple[str, Renderer], ...] = (("/anthropic/", _anthropic_error), ("/genai/", _genai_error))


def render(request: web.Request, err: GatewayError) -> web.Response:
    """`err` in the error shape of the route `request` was for, with the gateway's usual headers."""
    headers = {"x-request-id": request.app[GATEWAY].new_id(), "x-bf-overhead-us": "0"}
    path = request.path
    for prefix, renderer in RENDERERS:
        if path.startswith(prefix):
            return renderer(err, headers)
    return _openai_error(err, headers)  # OpenAI's shape: /v1, /api, /ws, /metrics, /health, the UI


def _forbidden(request: web.Request, message: str, code: str) -> web.Response:
    return render(request, GatewayError(message, status=403, type="permission_error", code=code))


# -- the policy ---------------------------------------------------------------------------------------
class OriginPolicy:
    """`client.allowed_origins` and the listen address, turned into set lookups at start-up."""

    __slots__ = ("_good_hosts", "any_origin", "check_host", "origins")

    def __init__(self, config: GatewayConfig) -> None:
        self.check_host = is_loopback(config.host)
        origins = config.client.allowed_origins
        self.any_origin = "*" in origins
        self.origins = frozenset(o.strip().rstrip("/").lower() for o in origins if o.strip() != "*")
        self._good_hosts: set[str] = set()

    @property
    def cors(self) -> bool:
        """Whether any cross-origin page may be answered (else no response needs CORS headers)."""
        return self.any_origin or bool(self.origins)

    def host_ok(self, host: str) -> bool:
        if host in self._good_hosts:
            return True
        if not is_loopback(_host_name(host)):
            return False
        if len(self._good_hosts) < _KNOWN_HOSTS_CAP:
            self._good_hosts.add(host)
        return True

    def listed(self, origin: str, admin: bool) -> bool:
        """Whether `origin` is on the list ("*" counts, except for the management API)."""
        return origin.lower() in self.origins or (self.any_origin and not admin)

    @staticmethod
    def same_origin(origin: str, host: str | None) -> bool:
        if host is None or origin == "null":
            return False
        try:
            return urlsplit(origin).netloc.lower() == host.lower()
        except ValueError:
            return False


Check = Callable[[web.Request], "web.StreamResponse | None"]


def checker(config: GatewayConfig) -> Check:
    """The policy as one synchronous function: a refusal (or a preflight answer) to send instead of
    calling the handler, or None to go on. runtime/http/edge.py calls it for every request."""
    policy = OriginPolicy(config)

    def check(request: web.Request) -> web.StreamResponse | None:
        headers = request.headers
        if policy.check_host:
            host = headers.get("Host")
            if host is not None and not policy.host_ok(host):
                return _forbidden(
                    request,
                    f"Host {host!r} is not a loopback name; use http://127.0.0.1 or http://localhost "
                    "(a gateway on loopback answers only to loopback names, against DNS rebinding)",
                    "host_not_allowed",
                )
        origin = headers.get("Origin")
        method = request.method
        if origin is not None:
            refused = _check_origin(request, origin, method)
            if refused is not None:
                return refused
        if method in STATE_CHANGING and not _is_json(headers.get("Content-Type")):
            return _not_json(request)
        return None

    def _check_origin(request: web.Request, origin: str, method: str) -> web.StreamResponse | None:
        path = request.path
        admin = path == "/ws" or path.startswith("/api/") or path == "/api"
        same = policy.same_origin(origin, request.headers.get("Host"))
        listed = not same and policy.listed(origin, admin)
        if method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            if not (same or listed):
                return _forbidden(request, f"cross-origin request from {origin} refused", "cross_site_request")
            return _preflight(request, origin)
        if not (same or listed) and (admin or method in STATE_CHANGING):
            return _forbidden(
                request,
                f"cross-origin request from {origin} refused (add it to client.allowed_origins to allow it)",
                "cross_site_request",
            )
        if listed:
            request[_CORS_ORIGIN] = origin  # type: ignore[index]  # read when the response is prepared
        return None

    return check


def _not_json(request: web.Request) -> web.Response | None:
    """415 for a non-JSON body on an inference or admin route; None where other bodies are fine."""
    path = request.path
    if path.startswith(INFERENCE_PREFIXES):
        pass  # always JSON, even an empty body: nothing else may reach a provider
    elif (path.startswith("/api/") or path == "/ws") and request.can_read_body:
        pass
    else:
        return None
    return render(
        request,
        GatewayError(
            "send the request body as Content-Type: application/json",
            status=415,
            type="invalid_request_error",
            code="unsupported_media_type",
        ),
    )


def _preflight(request: web.Request, origin: str) -> web.Response:
    headers = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": _ALLOW_METHODS,
        "Access-Control-Max-Age": _MAX_AGE,
        "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    }
    wanted = request.headers.get("Access-Control-Request-Headers")
    if wanted:
        headers["Access-Control-Allow-Headers"] = wanted  # any header: keys, anthropic-version, x-bf-*
    return web.Response(status=204, headers=headers)


async def _add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: runs before the headers go out, so streamed answers get them too."""
    origin = request.get(_CORS_ORIGIN)  # type: ignore[call-overload]
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "*"
        vary = response.headers.get("Vary")
        response.headers["Vary"] = f"{vary}, Origin" if vary else "Origin"


def install_cors(app: web.Application, config: GatewayConfig) -> None:
    """The response hook that adds CORS headers, only when some cross-origin page is allowed."""
    if OriginPolicy(config).cors:
        app.on_response_prepare.append(_add_cors_headers)

"""The breaker settings through the admin API: a provider's view shows the effective `circuit_breaker`
and `load_balancing`; a PUT with them applies at once; a bad field is a 400 naming its path; the
view-only `health` block sent back is ignored (GET then PUT stores what was there)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from fakes import FakeOpenAI
from harness import Gateway, StartGateway, make_config, openai_provider

from .helpers import SERVER_ERROR, ask_status, get_json

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def put(gateway: Gateway, path: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(gateway.url(path), data=json.dumps(body).encode(), method="PUT")
    request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_breaker_settings_round_trip_through_the_admin_api(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url)}))
    view = get_json(gateway, "/api/providers/openai")
    assert view["effective"]["circuit_breaker"] == {
        "enabled": True,
        "consecutive_failures": 5,
        "error_rate": 0.5,
        "min_requests": 20,
        "window_seconds": 30.0,
        "cooldown_seconds": 30.0,
        "max_cooldown_seconds": 300.0,
    }
    assert view["effective"]["load_balancing"] == "weighted"
    assert view["health"] == {"circuit_breaker": True, "keys": {}, "models": {}}

    view["circuit_breaker"] = {"consecutive_failures": 1, "cooldown_seconds": 60}
    view["load_balancing"] = "adaptive"
    status, updated = put(gateway, "/api/providers/openai", view)  # health and effective sent back: ignored
    assert status == 200, updated
    assert updated["effective"]["circuit_breaker"]["consecutive_failures"] == 1
    stored = json.loads((gateway.app_dir / "config.json").read_text())["providers"]["openai"]
    assert stored["circuit_breaker"] == {"consecutive_failures": 1, "cooldown_seconds": 60}
    assert "health" not in stored and stored["load_balancing"] == "adaptive"

    fake_openai.always(SERVER_ERROR)
    assert ask_status(gateway) == 500
    assert get_json(gateway, "/api/providers/openai")["health"]["models"]["gpt-4o-mini"]["state"] == "open"

    status, error = put(gateway, "/api/providers/openai", {**stored, "circuit_breaker": {"cooldown": 5}})
    assert status == 400
    assert error["error"]["param"] == "providers.openai.circuit_breaker.cooldown"
    assert "did you mean 'cooldown_seconds'" in error["error"]["message"]

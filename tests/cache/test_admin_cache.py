"""/api/cache (issue 12 item 6) on real gateway processes, with the official openai SDK making the hits:
every route (Go's clear/{id} and clear-by-key/{key}, ours besides), caching off (409 cache_disabled, empty
answers, no cache series on /metrics), bad input (the documented 400s), the admin token required like every
/api route, PUT /api/cache/config written to config.json and picked up, and no secret in any answer (the
embedding provider's keys, a virtual key's value)."""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import quote

import pytest
from fakes import FakeOpenAI
from harness import Gateway

from .conftest import COST, USAGE, StartCache, cache_config, call, metrics_text

CACHE = {"dimension": 1, "ttl": 300, "default_cache_key": "default"}
ROUTES = [
    ("GET", "/api/cache/stats"),
    ("GET", "/api/cache/entries"),
    ("GET", "/api/cache/entries/some-id"),
    ("DELETE", "/api/cache/clear"),
    ("DELETE", "/api/cache/clear/some-id"),
    ("DELETE", "/api/cache/clear-by-key/some-key"),
    ("GET", "/api/cache/config"),
    ("PUT", "/api/cache/config"),
]


def ask(gw: Gateway, content: str, headers: dict[str, str] | None = None, api_key: str | None = None) -> Any:
    """One chat request through the SDK; (answer text, the x-bf-cache header, the request id)."""
    kwargs = {"api_key": api_key} if api_key else {}
    with gw.client(**kwargs) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": content}],
            extra_headers=headers or {},
        )
        answer = raw.parse()
        return answer.choices[0].message.content, raw.headers.get("x-bf-cache"), raw.headers.get("x-request-id")


@pytest.fixture
def cached(start_cache_gateway: StartCache) -> Gateway:
    return start_cache_gateway(CACHE)


def test_every_route_with_caching_on(cached: Gateway, fake_openai: FakeOpenAI) -> None:
    gw = cached
    text, state, first_id = ask(gw, "what is the capital of France?")
    assert state == "miss"
    again, state, _ = ask(gw, "what is the capital of France?")
    assert state == "hit-direct" and again == text
    assert len(fake_openai.recorder.requests) == 1  # the hit never reached the provider
    ask(gw, "a second prompt", headers={"x-bf-cache-key": "team/a"})

    status, stats = call(gw, "GET", "/api/cache/stats")
    assert status == 200 and stats["enabled"] is True, stats
    assert stats["requests"] == 3 and stats["hits"] == {"direct": 1, "semantic": 0, "total": 1}
    assert stats["misses"]["total"] == 2 and stats["hit_rate"] == pytest.approx(1 / 3)
    assert stats["saved"]["prompt_tokens"] == USAGE["prompt_tokens"]
    assert stats["saved"]["completion_tokens"] == USAGE["completion_tokens"]
    assert stats["saved"]["cost"] == pytest.approx(COST) and stats["saved"]["upstream_seconds"] >= 0
    assert stats["entries"] == 2 and stats["bytes"] > 0 and stats["stored"] == 2
    assert stats["config"]["ttl"] == 300 and stats["config"]["default_cache_key"] == "default"
    assert stats["lookup_ms_avg"]["direct"] is not None and stats["lookup_ms_avg"]["semantic"] is None
    for name in ("coalesced", "not_stored", "evicted", "expired", "write_errors"):
        assert isinstance(stats[name], int), name

    # The list: newest first, search, paging; never the embedding, a preview of the prompt.
    status, listed = call(gw, "GET", "/api/cache/entries")
    assert status == 200 and listed["total_count"] == 2 and listed["count"] == 2
    assert [e["cache_key"] for e in listed["entries"]] == ["team/a", "default"]
    entry = listed["entries"][1]
    assert entry["id"] == first_id and entry["hits"] == 1 and entry["last_hit_at"]
    assert "what is the capital of France?" in entry["prompt_preview"] and entry["provider"] == "openai"
    assert entry["model"] == "gpt-4o-mini" and entry["cost"] == pytest.approx(COST) and entry["size"] > 0
    assert entry["expires_at"] - entry["created_at"] == pytest.approx(300) and entry["expired"] is False
    assert "response" not in entry and "embedding" not in entry
    status, found = call(gw, "GET", "/api/cache/entries?search=FRANCE")
    assert status == 200 and [e["id"] for e in found["entries"]] == [first_id]
    status, paged = call(gw, "GET", "/api/cache/entries?limit=1&offset=1")
    assert paged["count"] == 1 and paged["total_count"] == 2 and paged["entries"][0]["id"] == first_id
    assert paged["limit"] == 1 and paged["offset"] == 1

    # One entry, with the stored answer.
    status, one = call(gw, "GET", f"/api/cache/entries/{first_id}")
    assert status == 200 and one["entry"]["response"]["choices"][0]["message"]["content"] == text
    assert "what is the capital of France?" in one["entry"]["prompt_text"]
    status, missing = call(gw, "GET", "/api/cache/entries/no-such-entry")
    assert status == 404 and missing["error"]["code"] == "not_found" and missing["error"]["param"] == "id"

    # Go's routes: by request id (404 when none), by cache key (a '/' in the key, percent-encoded).
    status, body = call(gw, "DELETE", "/api/cache/clear/no-such-entry")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = call(gw, "DELETE", f"/api/cache/clear-by-key/{quote('team/a', safe='')}")
    assert status == 200 and body["deleted"] == 1, body
    status, body = call(gw, "DELETE", "/api/cache/clear-by-key/nothing-here")
    assert status == 200 and body["deleted"] == 0
    status, body = call(gw, "DELETE", f"/api/cache/clear/{first_id}")
    assert status == 200 and body["deleted"] == 1
    assert ask(gw, "what is the capital of France?")[1] == "miss"  # gone: asked again, it misses
    status, body = call(gw, "DELETE", "/api/cache/clear")
    assert status == 200 and body["deleted"] == 1
    assert call(gw, "GET", "/api/cache/stats")[1]["entries"] == 0


def test_metrics_series_when_on(cached: Gateway) -> None:
    ask(cached, "count me")
    ask(cached, "count me")
    text = metrics_text(cached)
    expected = {
        "bifrost_cache_requests_total": 2,
        'bifrost_cache_hits_total{mode="direct"}': 1,
        'bifrost_cache_hits_total{mode="semantic"}': 0,
        'bifrost_cache_misses_total{mode="direct"}': 1,
        'bifrost_cache_saved_tokens_total{kind="prompt"}': USAGE["prompt_tokens"],
        'bifrost_cache_saved_tokens_total{kind="completion"}': USAGE["completion_tokens"],
        "bifrost_cache_coalesced_total": 0,
        'bifrost_cache_lookup_seconds_count{mode="direct"}': 2,
        "bifrost_cache_entries": 1,
        "bifrost_cache_evicted_total": 0,
    }
    for series, value in expected.items():
        match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
        assert match is not None, f"{series} missing from /metrics"
        assert float(match.group(1)) == value, series
    for series in (
        "bifrost_cache_saved_cost_dollars_total",
        "bifrost_cache_saved_upstream_seconds_total",
        'bifrost_cache_lookup_seconds_sum{mode="direct"}',
        "bifrost_cache_bytes",
    ):
        match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
        assert match is not None and float(match.group(1)) > 0, series
    assert float(re.search(r"^bifrost_cache_saved_cost_dollars_total (\S+)$", text, re.M).group(1)) == pytest.approx(  # type: ignore[union-attr]
        COST
    )


def test_caching_off_answers_empty_and_409_and_no_metrics(start_cache_gateway: StartCache) -> None:
    gw = start_cache_gateway(None)
    status, stats = call(gw, "GET", "/api/cache/stats")
    assert status == 200 and stats["enabled"] is False and stats["entries"] == 0 and stats["hits"]["total"] == 0
    status, listed = call(gw, "GET", "/api/cache/entries")
    assert status == 200 and listed == {
        "enabled": False,
        "entries": [],
        "count": 0,
        "total_count": 0,
        "limit": 50,
        "offset": 0,
    }
    for method, path in ROUTES:
        if method == "DELETE" or path.startswith("/api/cache/entries/"):
            status, body = call(gw, method, path)
            assert status == 409 and body["error"]["code"] == "cache_disabled", (path, body)
            assert "PUT /api/cache/config" in body["error"]["message"]
    status, config = call(gw, "GET", "/api/cache/config")
    assert status == 200 and config["enabled"] is False and config["active"] is False
    assert config["defaults"] == {"dimension": 1, "ttl": 300, "default_cache_key": "default"}
    ask(gw, "not cached")
    assert "bifrost_cache" not in metrics_text(gw)


def test_a_disabled_entry_is_off(start_cache_gateway: StartCache) -> None:
    gw = start_cache_gateway(CACHE, enabled=False)
    assert call(gw, "GET", "/api/cache/stats")[1]["enabled"] is False
    status, config = call(gw, "GET", "/api/cache/config")
    assert status == 200 and config["enabled"] is False and config["config"] == CACHE
    assert config["restart_required"] is False


BAD = [
    ("GET", "/api/cache/entries?limit=0", "limit"),
    ("GET", "/api/cache/entries?limit=501", "limit"),
    ("GET", "/api/cache/entries?limit=1e3", "limit"),
    ("GET", "/api/cache/entries?limit=-1", "limit"),
    ("GET", "/api/cache/entries?offset=-1", "offset"),
    ("GET", "/api/cache/entries?offset=inf", "offset"),
    ("GET", "/api/cache/entries?offset=99999999999", "offset"),
    ("GET", "/api/cache/entries?search=" + "x" * 201, "search"),
    ("GET", "/api/cache/entries/" + "i" * 129, "id"),
    ("DELETE", "/api/cache/clear/" + "i" * 129, "id"),
    ("DELETE", "/api/cache/clear-by-key/" + "k" * 257, "key"),
]


def test_bad_input_is_a_400_naming_the_parameter(cached: Gateway) -> None:
    for method, path, param in BAD:
        status, body = call(cached, method, path)
        assert status == 400, (path, body)
        assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == param, (path, body)
    before = (cached.app_dir / "config.json").read_bytes()
    for body, param in (
        ({"enabled": True, "colour": "blue"}, "colour"),
        ({"enabled": "yes"}, "enabled"),
        ({"config": ["ttl", 5]}, "config"),
        ({"config": {**CACHE, "keys": "sk-not-a-list"}}, "config.keys"),
    ):
        status, answer = call(cached, "PUT", "/api/cache/config", body)
        assert status == 400 and answer["error"]["param"] == param, (body, answer)
    for raw in (b"[1, 2]", b"{not json", b'{"config": {"default_cache_key": "\\ud800"}}'):
        status, answer = call(cached, "PUT", "/api/cache/config", raw)
        assert status == 400 and answer["error"]["type"] == "invalid_request_error", (raw, answer)
    # A field the config loader refuses (wrong type, unknown name) is a 400 with its config.json path.
    for config, where in (({**CACHE, "ttl": [5]}, "ttl"), ({**CACHE, "tll": 5}, "tll")):
        status, answer = call(cached, "PUT", "/api/cache/config", {"enabled": True, "config": config})
        assert status == 400 and answer["error"]["code"] == "invalid_config", answer
        assert answer["error"]["param"] == f"plugins[0].config.{where}", answer
    assert (cached.app_dir / "config.json").read_bytes() == before


TOKEN = "a-configured-admin-token-0123456789"


def test_the_admin_token_is_required_off_loopback(start_cache_gateway: StartCache, fake_openai: FakeOpenAI) -> None:
    config = cache_config(fake_openai.url, CACHE)
    config["admin"] = {"token": "env.BIFROST_TEST_ADMIN_TOKEN"}
    gw = start_cache_gateway(config=config, args=("--host", "0.0.0.0"), env={"BIFROST_TEST_ADMIN_TOKEN": TOKEN})
    for method, path in ROUTES:
        body = {"enabled": True} if method == "PUT" else None
        status, answer = call(gw, method, path, body)
        assert status == 401 and answer["error"]["code"] == "admin_token_required", (path, answer)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert call(gw, "GET", "/api/cache/stats", headers=auth)[0] == 200
    assert call(gw, "GET", "/api/cache/entries", headers=auth)[0] == 200


EMBED_KEY = "sk-embedding-secret-0123456789"
VK = "sk-bf-cache-test-virtual-key-0001"


def test_put_config_writes_the_plugin_entry_keeps_its_keys_and_shows_no_secret(
    start_cache_gateway: StartCache,
) -> None:
    gw = start_cache_gateway(None)
    status, answer = call(gw, "PUT", "/api/cache/config", {"enabled": True})
    assert status == 200 and answer["enabled"] is True, answer
    assert answer["config"] == {"dimension": 1, "ttl": 300, "default_cache_key": "default"}  # the defaults
    written = json.loads((gw.app_dir / "config.json").read_text())
    assert written["plugins"] == [{"name": "semantic_cache", "enabled": True, "config": answer["config"]}]
    assert written["providers"]["openai"]  # the rest of the file is kept
    # Applied live: the running gateway caches at once.
    assert answer["active"] is True and answer["restart_required"] is False
    assert answer["effective"]["ttl"] == 300 and answer["effective"]["default_cache_key"] == "default"
    assert ask(gw, "live on")[1] == "miss" and ask(gw, "live on")[1] == "hit-direct"

    config = {**CACHE, "ttl": 60, "keys": [EMBED_KEY]}
    status, answer = call(gw, "PUT", "/api/cache/config", {"enabled": True, "config": config})
    assert status == 200 and EMBED_KEY not in json.dumps(answer) and answer["keys_configured"] == 1
    # The loader's warnings about this entry come with the answer (Go's keys: this gateway uses its own).
    assert any(w.startswith("plugins[0].config.keys") for w in answer["warnings"]), answer["warnings"]
    # The config sent back as shown (without its keys) keeps the stored keys.
    status, answer = call(gw, "PUT", "/api/cache/config", {"enabled": True, "config": answer["config"]})
    assert status == 200 and answer["config"]["ttl"] == 60 and answer["keys_configured"] == 1
    written = json.loads((gw.app_dir / "config.json").read_text())
    assert written["plugins"][0]["config"]["keys"] == [EMBED_KEY]
    for path in ("/api/cache/config", "/api/cache/stats", "/api/config"):
        status, body = call(gw, "GET", path)
        assert status == 200 and EMBED_KEY not in json.dumps(body), path

    # A restart picks the entry up: caching is on, with the written settings.
    gw.stop()
    gw = start_cache_gateway(app_dir=gw.app_dir, fresh=False)
    status, stats = call(gw, "GET", "/api/cache/stats")
    assert stats["enabled"] is True and stats["config"]["ttl"] == 60 and "keys" not in stats["config"]
    assert ask(gw, "after restart")[1] == "miss" and ask(gw, "after restart")[1] == "hit-direct"
    status, config_view = call(gw, "GET", "/api/cache/config")
    assert config_view["active"] is True and config_view["restart_required"] is False
    assert EMBED_KEY not in json.dumps(config_view)

    # Off again, live: written as enabled: false, its settings kept for the next time.
    status, answer = call(gw, "PUT", "/api/cache/config", {"enabled": False})
    assert status == 200 and answer["enabled"] is False and answer["config"]["ttl"] == 60
    assert answer["active"] is False and answer["restart_required"] is False
    assert ask(gw, "after restart")[1] is None  # not consulted
    assert call(gw, "GET", "/api/cache/stats")[1]["enabled"] is False
    assert call(gw, "DELETE", "/api/cache/clear")[0] == 409
    written = json.loads((gw.app_dir / "config.json").read_text())
    assert written["plugins"][0]["enabled"] is False and written["plugins"][0]["config"]["keys"] == [EMBED_KEY]


def test_entries_name_the_virtual_key_by_id_never_by_value(
    start_cache_gateway: StartCache, fake_openai: FakeOpenAI
) -> None:
    config = cache_config(fake_openai.url, CACHE)
    config["governance"] = {"virtual_keys": [{"id": "vk-cache", "name": "cache key", "value": VK}]}
    config["client"] = {**config.get("client", {}), "enforce_auth_on_inference": True}
    gw = start_cache_gateway(config=config)
    ask(gw, "governed prompt", api_key=VK)
    assert ask(gw, "governed prompt", api_key=VK)[1] == "hit-direct"
    status, listed = call(gw, "GET", "/api/cache/entries")
    assert status == 200 and listed["entries"][0]["virtual_key_id"] == "vk-cache"
    status, one = call(gw, "GET", f"/api/cache/entries/{listed['entries'][0]['id']}")
    assert status == 200
    for body in (listed, one, call(gw, "GET", "/api/cache/stats")[1]):
        assert VK not in json.dumps(body)


def test_counters_add_up_over_workers(start_cache_gateway: StartCache) -> None:
    """With --workers 2 a scrape (or a stats read) lands on any one worker: it reports every worker's."""
    gw = start_cache_gateway(CACHE, args=("--workers", "2"))
    for i in range(8):
        assert ask(gw, f"distinct prompt {i}")[1] == "miss"

    def requests_total() -> float:
        match = re.search(r"^bifrost_cache_requests_total (\S+)$", metrics_text(gw), re.M)
        return float(match.group(1)) if match else -1.0

    deadline = time.monotonic() + 15  # each worker publishes its counters once a second
    while requests_total() != 8 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert requests_total() == 8
    # The other worker may answer this one, with our numbers up to a second old: poll the same way.
    status, stats = call(gw, "GET", "/api/cache/stats")
    while stats["requests"] != 8 and time.monotonic() < deadline + 5:
        time.sleep(0.2)
        status, stats = call(gw, "GET", "/api/cache/stats")
    assert status == 200 and stats["requests"] == 8 and stats["misses"]["direct"] == 8

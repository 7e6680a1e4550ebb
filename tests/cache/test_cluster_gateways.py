"""Two real gateway processes in cluster mode (shared_state redis, config_store postgres) share one
response cache: an answer cached through gateway A is a direct hit on gateway B, through the official
openai SDK against the fake OpenAI (which counts the upstream calls); both admin APIs see the entry,
and a delete through B is a miss on A."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fakes import FakeOpenAI
from fakes.reply import Reply
from harness import Gateway, StartGateway, make_config, openai_provider
from harness.postgres import PostgresServer
from harness.redis import RedisServer, start_redis

from .conftest import call

MESSAGES: Any = [{"role": "user", "content": "What is the capital of France?"}]
MODEL = "openai/gpt-4o-mini"


def cluster_config(fake_url: str, redis_port: int, store: dict[str, str]) -> dict[str, Any]:
    config = make_config({"openai": openai_provider(fake_url)})
    config["plugins"] = [
        {"name": "semantic_cache", "config": {"dimension": 1, "ttl": "5m", "default_cache_key": "cluster"}}
    ]
    config["shared_state"] = {"type": "redis", "config": {"addr": f"127.0.0.1:{redis_port}", "key_prefix": "gw:"}}
    config["config_store"] = {"enabled": True, "type": "postgres", "config": store}
    return config


def cache_header(gw: Gateway, bound_s: float = 5.0, want: str = "hit-direct") -> tuple[Any, float]:
    """Ask `gw` until its answer's x-bf-cache is `want` (A's write reaches Redis in a background batch).
    With x-bf-cache-no-store: a miss while A's write travels must not store an answer of `gw`'s own."""
    started = time.monotonic()
    with gw.client(default_headers={"x-bf-cache-no-store": "true"}) as client:
        while True:
            answer = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
            took = time.monotonic() - started
            if answer.headers["x-bf-cache"] == want or took > bound_s:
                return answer, took
            time.sleep(0.05)


def test_an_answer_cached_through_a_is_a_hit_on_b(
    start_gateway: StartGateway,
    fake_openai: FakeOpenAI,
    postgres_server: PostgresServer,
    postgres_db: str,
    redis_server: RedisServer,
    redis_url: str,
) -> None:
    fake_openai.always(Reply(content="Paris."))
    config = cluster_config(fake_openai.url, redis_server.port, postgres_server.settings(postgres_db))
    a = start_gateway(config)
    b = start_gateway(config)
    with a.client() as client_a:
        first = client_a.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert first.headers["x-bf-cache"] == "miss"
    request_id = first.headers["x-request-id"]
    second, took = cache_header(b)
    print(f"\ncached through A, a direct hit on B after {took * 1000:.0f} ms")
    assert second.headers["x-bf-cache"] == "hit-direct"
    assert second.headers["x-bf-cache-id"] == request_id
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content == "Paris."
    assert redis_server.keys("gw:cache:*") != []
    calls = len(fake_openai.requests_to("/chat/completions"))
    cache_header(b)  # now from B's memory: no upstream call
    assert len(fake_openai.requests_to("/chat/completions")) == calls

    # one row in the config store's database, seen by both admin APIs
    for gw in (a, b):
        deadline = time.monotonic() + 5.0
        while True:
            status, listed = call(gw, "GET", "/api/cache/entries")
            assert status == 200
            if listed["entries"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert [e["id"] for e in listed["entries"]] == [request_id]

    # deleted through B: a miss on A (its memory, Redis and PostgreSQL all forgot it)
    status, _ = call(b, "DELETE", f"/api/cache/clear/{request_id}")
    assert status == 200
    third, _ = cache_header(a, want="miss")
    assert third.headers["x-bf-cache"] == "miss"


def test_a_similar_prompt_on_b_is_a_semantic_hit_on_as_answer(
    start_gateway: StartGateway,
    fake_openai: FakeOpenAI,
    postgres_server: PostgresServer,
    postgres_db: str,
    redis_server: RedisServer,
    redis_url: str,
) -> None:
    """Semantic mode (the mock provider's deterministic embeddings): B's vector index learns A's entry
    through PostgreSQL's notification. B's requests carry x-bf-cache-no-store, so a miss on B while the
    change travels stores nothing of its own, and the hit can only be A's answer."""
    config = cluster_config(fake_openai.url, redis_server.port, postgres_server.settings(postgres_db))
    config["plugins"][0]["config"].update(
        {"provider": "mock", "embedding_model": "mock-embed-semantic", "dimension": 256, "threshold": 0.6}
    )
    a = start_gateway(config)
    b = start_gateway(config)
    asked: Any = [{"role": "user", "content": "what is the capital city of france"}]
    reworded: Any = [{"role": "user", "content": "please tell me what is the capital city of france"}]
    with a.client() as client_a:
        first = client_a.chat.completions.with_raw_response.create(model=MODEL, messages=asked)
    assert first.headers["x-bf-cache"] == "miss"
    started = time.monotonic()
    with b.client(default_headers={"x-bf-cache-no-store": "true"}) as client_b:
        while True:
            hit = client_b.chat.completions.with_raw_response.create(model=MODEL, messages=reworded)
            took = time.monotonic() - started
            if hit.headers["x-bf-cache"] == "hit-semantic" or took > 5.0:
                break
            time.sleep(0.05)
    print(f"\nstored through A, a semantic hit on B after {took * 1000:.0f} ms")
    assert hit.headers["x-bf-cache"] == "hit-semantic"
    assert hit.headers["x-bf-cache-id"] == first.headers["x-request-id"]
    assert 0.6 <= float(hit.headers["x-bf-cache-similarity"]) < 1.0
    assert hit.parse().choices[0].message.content == first.parse().choices[0].message.content


def test_redis_stopped_the_gateway_answers_uncached_in_bounded_time(
    start_gateway: StartGateway,
    fake_openai: FakeOpenAI,
    postgres_server: PostgresServer,
    postgres_db: str,
    tmp_path: Path,
) -> None:
    """Redis is the exact-lookup path: with it gone, requests are misses answered by the provider (the
    cache never turns into an error or a hang), and what the worker holds in memory still hits."""
    own = start_redis(tmp_path / "redis")
    try:
        config = cluster_config(fake_openai.url, own.port, postgres_server.settings(postgres_db))
        config["shared_state"]["config"]["context_timeout"] = "1s"
        gw = start_gateway(config)
        with gw.client() as client:
            first = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
            assert first.headers["x-bf-cache"] == "miss"
            assert (
                client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES).headers["x-bf-cache"]
                == "hit-direct"
            )
            own.stop()
            started = time.monotonic()
            other: Any = [{"role": "user", "content": "a prompt never asked before"}]
            answer = client.chat.completions.with_raw_response.create(model=MODEL, messages=other)
            took = time.monotonic() - started
            print(f"\nRedis stopped: a new prompt answered (uncached) in {took * 1000:.0f} ms")
            assert answer.headers["x-bf-cache"] == "miss" and answer.parse().choices[0].message.content
            assert took < 10  # bounded (the Redis timeout is 1 s); the real figure is printed
            again = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
            assert again.headers["x-bf-cache"] == "hit-direct"  # from the worker's memory
    finally:
        own.stop()


def test_postgres_stopped_the_admin_api_says_503_and_requests_are_served(
    start_gateway: StartGateway,
    fake_openai: FakeOpenAI,
    postgres_server: PostgresServer,
    postgres_db: str,
    redis_server: RedisServer,
    redis_url: str,
) -> None:
    """PostgreSQL holds the entries the admin API lists: with it down, the cache routes answer a readable
    503 naming the server (no password), and inference goes on (Redis still serves exact hits)."""
    fake_openai.always(Reply(content="Paris."))
    gw = start_gateway(cluster_config(fake_openai.url, redis_server.port, postgres_server.settings(postgres_db)))
    with gw.client() as client:
        assert client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES).headers["x-bf-cache"]
    postgres_server.stop()
    try:
        status, body = call(gw, "GET", "/api/cache/entries")
        assert status == 503, body
        assert body["error"]["code"] == "cache_store_unavailable"
        assert f"127.0.0.1:{postgres_server.port}" in body["error"]["message"]
        answer, _took = cache_header(gw)  # served from Redis / memory while PostgreSQL is away
        assert answer.headers["x-bf-cache"] == "hit-direct"
    finally:
        postgres_server.start()

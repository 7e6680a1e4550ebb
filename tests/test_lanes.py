"""Per-provider lanes (concurrency + bounded wait queue, queue-full 429) and key selection
(weighted random among the keys whose `models` allow the model)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp
import openai
import pytest
from fakes import FakeOpenAI, Reply, wait_until
from harness import Gateway, StartGateway, assert_error_shape, custom_provider, make_config, openai_provider
from harness.config import key

MESSAGES = [{"role": "user", "content": "lane"}]


async def post_many(gateway: Gateway, n: int, model: str = "openai/gpt-4o-mini") -> list[tuple[int, Any]]:
    body = {"model": model, "messages": MESSAGES}
    timeout = aiohttp.ClientTimeout(total=90)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def one() -> tuple[int, Any]:
            async with session.post(gateway.url("/v1/chat/completions"), json=body) as resp:
                return resp.status, await resp.json(content_type=None)

        return await asyncio.gather(*(one() for _ in range(n)))


async def test_queue_full_answers_429_at_once(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start_gateway(
        make_config(
            {"openai": openai_provider(fake_openai.url, concurrency=1, buffer_size=1)},
            drop_excess_requests=True,
        )
    )
    fake_openai.always(Reply(delay=3))
    results = await post_many(gateway, 6)
    statuses = Counter(status for status, _ in results)
    assert statuses[200] >= 2, f"one in flight plus one waiting should succeed: {statuses}"
    assert statuses[429] >= 1, f"the rest should be dropped with 429: {statuses}"
    assert statuses[200] + statuses[429] == 6, statuses
    for status, body in results:
        if status == 429:
            error = assert_error_shape(body, 429)
            assert error["type"] == "queue_full"
            assert body["is_bifrost_error"] is True
    assert fake_openai.recorder.max_in_flight == 1
    assert len(fake_openai.requests) == statuses[200], "dropped requests never reach the provider"


async def test_concurrency_caps_upstream_in_flight(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url, concurrency=2, buffer_size=50)}))
    fake_openai.always(Reply(delay=0.3))
    results = await post_many(gateway, 8)
    assert [status for status, _ in results] == [200] * 8, "without drop_excess_requests they wait their turn"
    assert fake_openai.recorder.max_in_flight == 2


async def test_weighted_keys_share_traffic(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.keys = {"sk-heavy", "sk-light"}
    keys = [key("sk-heavy", name="heavy", weight=3), key("sk-light", name="light", weight=1)]
    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url, keys=keys)}))
    n = 400
    for _ in range(4):
        results = await post_many(gateway, n // 4)
        assert all(status == 200 for status, _ in results)
    used = Counter(r.bearer for r in fake_openai.requests)
    # Binomial(400, 0.75): mean 300, sd ~8.7; the bounds are ~6 sd wide, so this never flakes.
    assert 250 <= used["sk-heavy"] <= 350, used
    assert used["sk-heavy"] + used["sk-light"] == n, used


def test_key_models_allow_list(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.keys = {"sk-big", "sk-small", "sk-any"}
    keys = [
        key("sk-big", name="big", models=["gpt-4o"]),
        key("sk-small", name="small", models=["gpt-4o-mini"]),
    ]
    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url, keys=keys)}))
    with gateway.client() as client:
        for _ in range(10):
            client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES)
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="openai/o1-preview", messages=MESSAGES)
    by_model = {(r.body["model"], r.bearer) for r in fake_openai.requests}
    assert by_model == {("gpt-4o", "sk-big"), ("gpt-4o-mini", "sk-small")}
    error = assert_error_shape(err.value.response.json(), 400)
    assert "o1-preview" in error["message"]
    assert len(fake_openai.requests) == 20, "a model no key allows never reaches the provider"


def test_key_with_empty_models_serves_everything(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.keys = {"sk-big", "sk-any"}
    keys = [key("sk-big", name="big", models=["gpt-4o"]), key("sk-any", name="any", models=[])]
    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url, keys=keys)}))
    with gateway.client() as client:
        for _ in range(5):
            client.chat.completions.create(model="openai/some-other-model", messages=MESSAGES)
    assert {r.bearer for r in fake_openai.requests} == {"sk-any"}


async def test_lanes_are_per_provider(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    gateway = start_gateway(
        make_config(
            {
                "openai": openai_provider(fake_openai.url, concurrency=1, buffer_size=10),
                "backup": custom_provider(fake_openai_2.url, keys=("sk-fake-2",)),
            }
        )
    )
    fake_openai.always(Reply(delay=4))
    slow = asyncio.ensure_future(post_many(gateway, 3))
    assert await asyncio.to_thread(lambda: wait_until(lambda: fake_openai.recorder.in_flight == 1, 20))
    fast = await post_many(gateway, 2, model="backup/gpt-4o-mini")
    assert [status for status, _ in fast] == [200, 200]
    assert fake_openai.counts.get("served", 0) == 0, "a busy provider's lane must not hold up another provider"
    assert [status for status, _ in await slow] == [200, 200, 200]


async def test_client_leaving_while_queued_never_reaches_upstream(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url, concurrency=1, buffer_size=10)}))
    fake_openai.always(Reply(delay=3))
    holder = asyncio.ensure_future(post_many(gateway, 1))
    assert await asyncio.to_thread(lambda: wait_until(lambda: fake_openai.recorder.in_flight == 1, 20))
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(gateway.url("/v1/chat/completions"), json=body) as resp:
                await resp.read()
    assert [status for status, _ in await holder] == [200]
    rows = await asyncio.to_thread(gateway.log.wait_rows, 1, 15.0, "status = 499")
    assert len(rows) == 1, "the request whose client left while queued is logged with 499"
    await asyncio.sleep(1.0)
    assert len(fake_openai.requests) == 1, "the abandoned request must not be sent upstream"

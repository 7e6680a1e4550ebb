"""Budgets through real gateway processes: the limits plugin (runtime/governance/limits.py), driven by a
test plugin that sets `ctx.caller` from a header (tests/governance/limits_plugin), installed through a
`bifrost.plugins` entry point, on the gateway's own state.db in its app dir.

The fake provider reports 16 completion tokens and no prompt tokens are priced, so the worst case a
request reserves (max_tokens 16 x 1/1024 $) is exactly what it costs: 1/64 $, binary-exact."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from fakes import FakeOpenAI, Reply
from harness import Gateway
from harness.config import make_config, openai_provider
from harness.process import REPO_ROOT

PLUGIN_DIR = Path(__file__).with_name("limits_plugin")
PRICE_OUT = 1 / 1024
MAX_TOKENS = 16
COST = MAX_TOKENS * PRICE_OUT
USAGE = {"prompt_tokens": 7, "completion_tokens": MAX_TOKENS, "total_tokens": 7 + MAX_TOKENS}
GOVERNED = {"x-test-caller": "team-a"}
MESSAGES = [{"role": "user", "content": "hello"}]


def install_plugin(site: Path) -> Path:
    info = site / "bifrost_limits_test_plugin-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bifrost-limits-test-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[bifrost.plugins]\nlimits-test = bifrost_limits_test_plugin:LimitsTestPlugin\n"
    )
    return site


StartLimited = Callable[..., Gateway]


@pytest.fixture
def start_limited(start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI, tmp_path: Path) -> StartLimited:
    """start_limited(budgets=[...], rate_limits=[...], app_dir=..., args=(), **plugin_config) -> Gateway."""
    site = install_plugin(tmp_path / "site")
    fake_openai.always(Reply(usage=USAGE))

    def start(*, app_dir: Path | None = None, args: tuple[str, ...] = (), **plugin: Any) -> Gateway:
        directory = app_dir or tmp_path / "app"
        plugin.setdefault("price_out", PRICE_OUT)
        provider = openai_provider(fake_openai.url)
        # The gateway prices each answer from the catalog (ctx.cost), which settlement charges: give the
        # catalog the test plugin's prices, so reservation and settlement agree.
        provider["pricing_overrides"] = [
            {
                "model_pattern": "*",
                "match_type": "wildcard",
                "input_cost_per_token": plugin.get("price_in", 0.0),
                "output_cost_per_token": plugin["price_out"],
            }
        ]
        config = make_config({"openai": provider})
        plugin.setdefault("idle_return_s", 0.2)
        config["plugins"] = [{"name": "limits-test", "enabled": True, "config": {"app_dir": str(directory), **plugin}}]
        pythonpath = ":".join((str(REPO_ROOT), str(site), str(PLUGIN_DIR)))
        return start_gateway(config, env={"PYTHONPATH": pythonpath}, app_dir=directory, args=args)

    return start


def budget(max_requests: float, **extra: Any) -> dict[str, Any]:
    return {"id": "team-budget", "max_limit": max_requests * COST, "reset_duration": "1d", **extra}


def counter(app_dir: Path, name: str = "budget:team-budget") -> float:
    """The budget's counter in the gateway's state.db: spend + leases not yet given back."""
    db = sqlite3.connect(app_dir / "state.db")
    try:
        row = db.execute("SELECT COALESCE(SUM(value), 0) FROM counters WHERE key LIKE ?", (f"gov:{name}:%",)).fetchone()
        return float(row[0])
    finally:
        db.close()


def wait_counter(app_dir: Path, expected: float, timeout: float = 10.0) -> float:
    """Poll until unused leases went back (idle_return_s) and the counter is `expected`."""
    deadline = time.monotonic() + timeout
    value = counter(app_dir)
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        value = counter(app_dir)
    return value


async def burst(gateway: Gateway, n: int) -> tuple[int, list[Any]]:
    """n concurrent governed chat requests; (answered 200, the refusals)."""
    async with gateway.async_client(default_headers=GOVERNED, timeout=120.0) as client:

        async def one() -> Any:
            try:
                return await client.chat.completions.create(
                    model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=MAX_TOKENS
                )
            except openai.APIStatusError as err:
                return err

        results = await asyncio.gather(*(one() for _ in range(n)))
    refusals = [r for r in results if isinstance(r, openai.APIStatusError)]
    return n - len(refusals), refusals


def chat(gateway: Gateway, **kwargs: Any) -> Any:
    with gateway.client(default_headers=GOVERNED) as client:
        return client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=MAX_TOKENS, **kwargs
        )


@pytest.mark.parametrize("workers", [1, 2])
async def test_200_concurrent_requests_against_a_budget_that_fits_50(
    start_limited: StartLimited, fake_openai: FakeOpenAI, workers: int
) -> None:
    gw = start_limited(budgets=[budget(50)], args=("--workers", str(workers)))
    ok, refusals = await burst(gw, 200)
    # a hard ceiling: never more than 50; each worker may strand less than one slice of leases
    assert 44 <= ok <= 50, ok
    assert len(fake_openai.requests_to("/chat/completions")) == ok  # refused requests never went upstream
    assert {r.status_code for r in refusals} == {402}
    body = refusals[0].body
    assert body["type"] == "budget_exceeded" and "budget 'team-budget'" in body["message"]
    assert "resets at" in body["message"]
    assert wait_counter(gw.app_dir, ok * COST) == ok * COST <= 50 * COST  # spend, recorded in state.db


async def test_spend_survives_a_restart(start_limited: StartLimited, tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    gw = start_limited(budgets=[budget(5)], app_dir=app_dir)
    for _ in range(3):
        chat(gw)
    assert wait_counter(app_dir, 3 * COST) == 3 * COST
    assert gw.stop() == 0
    state = app_dir / "state.db"
    assert state.is_file() and state.parent == app_dir  # the gateway's app dir, not a temp file
    gw = start_limited(budgets=[budget(5)], app_dir=app_dir)
    chat(gw)
    chat(gw)
    with pytest.raises(openai.APIStatusError) as refused:
        chat(gw)
    assert refused.value.status_code == 402


async def test_a_stream_settles_to_its_reported_usage(start_limited: StartLimited, fake_openai: FakeOpenAI) -> None:
    fake_openai.always(Reply(usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}))
    gw = start_limited(budgets=[budget(3)])
    with gw.client(default_headers=GOVERNED) as client:
        # 8 x a quarter of the worst case is 2 of 3: only fits if every stream settled (without, 3 would)
        for i in range(8):
            stream = client.chat.completions.create(
                model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=MAX_TOKENS, stream=True
            )
            with stream:
                text = "".join((c.choices[0].delta.content or "") for c in stream if c.choices)
            assert text
            gw.log.wait_rows(i + 1)  # its on_finish ran (the log row is written there too): settled
    assert wait_counter(gw.app_dir, 8 * 4 * PRICE_OUT) == 2 * COST


async def test_failures_without_usage_cost_nothing(start_limited: StartLimited, fake_openai: FakeOpenAI) -> None:
    gw = start_limited(budgets=[budget(2)])
    for i in range(4):
        fake_openai.enqueue(Reply.error(400, "bad request upstream", "invalid_request_error"))
        with pytest.raises(openai.BadRequestError):
            chat(gw)
        gw.log.wait_rows(i + 1)  # settled (on_finish ran)
    chat(gw)
    chat(gw)
    assert wait_counter(gw.app_dir, 2 * COST) == 2 * COST


async def test_a_client_gone_mid_stream_is_charged_its_reservation(
    start_limited: StartLimited, fake_openai: FakeOpenAI
) -> None:
    fake_openai.always(Reply(usage=USAGE, chunk_delay=0.5, content="one two three four five six seven eight"))
    gw = start_limited(budgets=[budget(3)])
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "max_tokens": MAX_TOKENS, "stream": True}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.post(gw.url("/v1/chat/completions"), json=body, headers=GOVERNED) as resp,
    ):
        assert resp.status == 200
        assert await resp.content.readline()  # the first event arrived: the provider is generating
        resp.close()  # walk away mid-stream
    rows = gw.log.wait_rows(1)
    assert rows[0]["status"] == 499
    # the provider may have billed what it generated: the whole reservation stays spent
    assert wait_counter(gw.app_dir, COST) == COST


def test_ungoverned_requests_are_not_limited(start_limited: StartLimited) -> None:
    gw = start_limited(budgets=[budget(0)])
    with gw.client() as client:  # no x-test-caller: no Caller, nothing governed
        raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert raw.status_code == 200
    assert "x-ratelimit-limit-requests" not in raw.headers
    with pytest.raises(openai.APIStatusError) as refused:
        chat(gw)
    assert refused.value.status_code == 402

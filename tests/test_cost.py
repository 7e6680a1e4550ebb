"""The cost of every request, end to end: a real gateway in front of the fake OpenAI, Anthropic and Gemini
upstreams, driven by the official openai SDK; the log row's `cost` must equal the catalog's arithmetic
for each provider's usage shape (cached reads and cache writes included), plain and streamed.

The expected figures are computed here from the shipped models.json directly (not through the
gateway's code), so a wrong rate, a cached token priced twice or a field read from the wrong place fails.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from fakes import FakeOpenAI, Reply
from fakes.native import FakeAnthropic, FakeGemini, NativeReply
from harness import Gateway, StartGateway, make_config, openai_provider
from harness.config import DEFAULT_NETWORK

REPO = Path(__file__).resolve().parents[1]
CATALOG: dict[str, dict[str, Any]] = json.loads((REPO / "runtime" / "catalog" / "models.json").read_text())
MESSAGES = [{"role": "user", "content": "price me"}]


def rates(name: str) -> dict[str, float]:
    entry = CATALOG[name]
    return {k: entry[k] for k in ("input", "output", "cache_read", "cache_write") if k in entry}


@pytest.fixture
def fake_gemini() -> Iterator[FakeGemini]:
    fake = FakeGemini().start()
    try:
        yield fake
    finally:
        fake.stop()


def native(base_url: str, key: str) -> dict[str, Any]:
    return {
        "keys": [{"name": "k", "value": key, "models": [], "weight": 1}],
        "network_config": {"base_url": base_url, **DEFAULT_NETWORK},
    }


@pytest.fixture
def gw(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, fake_gemini: FakeGemini
) -> Gateway:
    return start_gateway(
        make_config(
            {
                "openai": openai_provider(fake_openai.url),
                "anthropic": native(fake_anthropic.url, "sk-ant-fake-1"),
                "gemini": native(fake_gemini.url, "gemini-fake-key"),
            }
        )
    )


def ask(gateway: Gateway, model: str, stream: bool) -> dict[str, Any]:
    """One chat request through the openai SDK; returns its log row."""
    with gateway.client() as client:
        if stream:
            raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, stream=True)
            list(raw.parse())
        else:
            raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
            raw.parse()
    return gateway.log.row_for(raw.headers["x-request-id"])


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_openai_cost_with_cached_prompt_tokens(gw: Gateway, fake_openai: FakeOpenAI, stream: bool) -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 200,
        "total_tokens": 1200,
        "prompt_tokens_details": {"cached_tokens": 400},
    }
    fake_openai.enqueue(Reply(usage=usage))
    row = ask(gw, "openai/gpt-4o", stream)
    r = rates("openai/gpt-4o")
    # OpenAI's prompt_tokens include the cached ones: 600 at the input rate, 400 at the cached rate.
    expected = 600 * r["input"] + 400 * r["cache_read"] + 200 * r["output"]
    assert (row["prompt_tokens"], row["cached_tokens"]) == (1000, 400)
    assert row["cost"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_anthropic_cost_with_cache_reads_and_writes(gw: Gateway, fake_anthropic: FakeAnthropic, stream: bool) -> None:
    usage = {
        "input_tokens": 100,
        "cache_read_input_tokens": 3000,
        "cache_creation_input_tokens": 500,
        "output_tokens": 50,
    }
    fake_anthropic.enqueue(NativeReply(usage=usage))
    row = ask(gw, "anthropic/claude-sonnet-4-5", stream)
    r = rates("anthropic/claude-sonnet-4-5")
    # Anthropic's input_tokens exclude cache reads and writes; each is priced at its own rate, once.
    expected = 100 * r["input"] + 3000 * r["cache_read"] + 500 * r["cache_write"] + 50 * r["output"]
    assert row["prompt_tokens"] == 3600 and row["cached_tokens"] == 3000
    assert row["cost"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_gemini_cost_with_cached_content(gw: Gateway, fake_gemini: FakeGemini, stream: bool) -> None:
    usage = {
        "promptTokenCount": 5000,
        "cachedContentTokenCount": 2000,
        "candidatesTokenCount": 100,
        "totalTokenCount": 5100,
    }
    fake_gemini.enqueue(NativeReply(usage=usage))
    row = ask(gw, "gemini/gemini-2.5-flash", stream)
    r = rates("gemini/gemini-2.5-flash")
    # Gemini's promptTokenCount includes cachedContentTokenCount.
    expected = 3000 * r["input"] + 2000 * r["cache_read"] + 100 * r["output"]
    assert row["cost"] == pytest.approx(expected, rel=1e-12)


def test_unknown_model_is_unpriced_not_free(gw: Gateway) -> None:
    row = ask(gw, "openai/not-a-catalog-model", stream=False)
    assert row["status"] == 200 and row["prompt_tokens"]
    assert row["cost"] is None


def test_failure_without_usage_has_no_cost(gw: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.bad_request("bad temperature"))
    with gw.client() as client, pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES)
    row = gw.log.row_for(err.value.response.headers["x-request-id"])
    assert row["status"] == 400 and row["cost"] is None


def test_pricing_overrides_take_effect(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    provider = openai_provider(fake_openai.url)
    provider["models"] = ["gpt-4o", "house-model-1"]
    provider["pricing_overrides"] = [
        {"model_pattern": "gpt-*", "match_type": "wildcard", "input_cost_per_token": 0.5},
        {"model_pattern": "gpt-4o", "match_type": "exact", "input_cost_per_token": 0.001},
        {
            "model_pattern": "house-*",
            "match_type": "wildcard",
            "input_cost_per_token": 0.000002,
            "output_cost_per_token": 0.000003,
        },
    ]
    gateway = start_gateway(make_config({"openai": provider}))
    usage = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
    fake_openai.enqueue(Reply(usage=usage))
    fake_openai.enqueue(Reply(usage=usage))
    patched = ask(gateway, "openai/gpt-4o", stream=False)
    house = ask(gateway, "openai/house-model-1", stream=True)
    # The exact override beats the wildcard; the output rate it does not set stays the catalog's.
    assert patched["cost"] == pytest.approx(10 * 0.001 + 20 * rates("openai/gpt-4o")["output"], rel=1e-12)
    # A model the catalog lacks is priced by its override alone.
    assert house["cost"] == pytest.approx(10 * 0.000002 + 20 * 0.000003, rel=1e-12)

    with gateway.client() as client:
        listed = {m.id: m for m in client.models.list()}
    assert listed["openai/gpt-4o"].model_extra is not None
    assert listed["openai/gpt-4o"].model_extra["pricing"]["prompt"] == "0.001"
    assert listed["openai/house-model-1"].model_extra["pricing"] == {"prompt": "0.000002", "completion": "0.000003"}


def test_models_list_shows_prices_and_context_windows(gw: Gateway) -> None:
    with gw.client() as client:
        models = {m.id: m for m in client.models.list()}
    entry = CATALOG["anthropic/claude-sonnet-4-5"]
    claude = models["anthropic/claude-sonnet-4-5"].model_extra
    assert claude is not None
    assert claude["context_length"] == entry["context_window"]
    assert claude["max_completion_tokens"] == entry["max_output"]
    assert float(claude["pricing"]["prompt"]) == entry["input"]
    assert float(claude["pricing"]["completion"]) == entry["output"]
    assert float(claude["pricing"]["input_cache_read"]) == entry["cache_read"]
    assert float(claude["pricing"]["input_cache_write"]) == entry["cache_write"]
    assert "e" not in claude["pricing"]["prompt"], "decimal strings, as OpenRouter writes them"
    gpt = models["openai/gpt-4o"].model_extra
    assert gpt is not None and gpt["context_length"] == CATALOG["openai/gpt-4o"]["context_window"]
    mock = models["mock/mock-gpt"].model_extra if "mock/mock-gpt" in models else {}
    assert "pricing" not in (mock or {}), "a model the catalog does not know shows no invented price"


def test_embeddings_are_priced(gw: Gateway, fake_openai: FakeOpenAI) -> None:
    with gw.client() as client:
        raw = client.embeddings.with_raw_response.create(model="openai/text-embedding-3-small", input="a b c d")
    row = gw.log.row_for(raw.headers["x-request-id"])
    assert row["prompt_tokens"] and row["cost"] == pytest.approx(
        row["prompt_tokens"] * rates("openai/text-embedding-3-small")["input"], rel=1e-12
    )


def test_a_stream_that_fails_after_usage_arrived_is_still_priced(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    """The upstream bills the prompt once it started answering: a stream cut after Anthropic's
    message_start (which carries the input usage) is logged as failed, with the cost of what was used."""
    usage = {"input_tokens": 1000, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0, "output_tokens": 7}
    fake_anthropic.enqueue(NativeReply(usage=usage, cut_after=3))
    with gw.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="anthropic/claude-sonnet-4-5", messages=MESSAGES, stream=True
        )
        with pytest.raises(openai.APIError):
            list(raw.parse())
    row = gw.log.row_for(raw.headers["x-request-id"])
    assert row["status"] >= 400
    r = rates("anthropic/claude-sonnet-4-5")
    # message_start reports the input and a first output token; the cut came before the final count.
    assert row["cost"] == pytest.approx(1000 * r["input"] + row["completion_tokens"] * r["output"], rel=1e-12)


def test_anthropic_ingress_rows_are_priced_too(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    usage = {"input_tokens": 10, "cache_read_input_tokens": 90, "cache_creation_input_tokens": 0, "output_tokens": 5}
    fake_anthropic.enqueue(NativeReply(usage=usage))
    with anthropic.Anthropic(base_url=gw.base_url + "/anthropic", api_key="sk-client", max_retries=0) as client:
        raw = client.messages.with_raw_response.create(
            model="anthropic/claude-sonnet-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        )
        raw.parse()
    row = gw.log.row_for(raw.headers["x-request-id"])
    r = rates("anthropic/claude-sonnet-4-5")
    assert row["cost"] == pytest.approx(10 * r["input"] + 90 * r["cache_read"] + 5 * r["output"], rel=1e-12)


def test_pricing_overrides_edited_live_apply_to_the_next_request(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url)}))
    base = f"{gateway.base_url}/api/providers/openai"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(base, timeout=30) as response:
        view = json.loads(response.read())
    view["pricing_overrides"] = [{"model_pattern": "gpt-4o", "match_type": "exact", "output_cost_per_token": 0.25}]
    put = urllib.request.Request(
        base, data=json.dumps(view).encode(), method="PUT", headers={"Content-Type": "application/json"}
    )
    with opener.open(put, timeout=30) as response:
        assert response.status == 200
        shown = json.loads(response.read())
    assert shown["pricing_overrides"][0]["output_cost_per_token"] == 0.25, "prices are shown, not masked"
    fake_openai.enqueue(Reply(usage={"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}))
    row = ask(gateway, "openai/gpt-4o", stream=False)
    assert row["cost"] == pytest.approx(4 * rates("openai/gpt-4o")["input"] + 2 * 0.25, rel=1e-12)

"""Pin the fake providers' own behaviour, talking to them directly with the official SDK.

If these fail, the gateway tests built on the fakes mean nothing.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import openai
import pytest
from fakes import FakeAzure, FakeOpenAI, Reply
from harness import read_sse

TOOL_CALL = ({"id": "call_abc123", "name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'},)
MESSAGES = [{"role": "user", "content": "hello fake world"}]


def sdk(fake: FakeOpenAI, key: str = "sk-fake-1", **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.url + "/v1", api_key=key, max_retries=0, **kwargs)  # type: ignore[arg-type]


def test_chat_completion_shape(fake_openai: FakeOpenAI) -> None:
    with sdk(fake_openai) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        answer = raw.parse()
    assert raw.headers["x-request-id"].startswith("req_")
    assert answer.object == "chat.completion"
    assert answer.id.startswith("chatcmpl-")
    assert answer.model == "gpt-4o-mini"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == "fake-openai: hello fake world"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    rec = fake_openai.requests[-1]
    assert rec.path == "/v1/chat/completions"
    assert rec.bearer == "sk-fake-1"
    assert rec.body["messages"] == MESSAGES


def test_stream_chunks_usage_and_done(fake_openai: FakeOpenAI) -> None:
    with sdk(fake_openai) as client:
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
        )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "fake-openai: hello fake world"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    assert fake_openai.wait_for("streams_completed"), "the fake records completion just after its last write"


async def test_stream_raw_ends_with_done(fake_openai: FakeOpenAI) -> None:
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            fake_openai.url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer sk-fake-1"}
        ) as resp,
    ):
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events, error = await read_sse(resp)
    assert error is None
    assert events[-1].is_done
    assert "usage" not in events[0].json()  # only with include_usage


def test_tool_calls_plain_and_streamed(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(tool_calls=TOOL_CALL), Reply(tool_calls=TOOL_CALL))
    with sdk(fake_openai) as client:
        answer = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    call = answer.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert answer.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name, call.function.arguments) == (  # type: ignore[union-attr]
        "call_abc123",
        "get_weather",
        TOOL_CALL[0]["arguments"],
    )
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id == "call_abc123" and deltas[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert len(deltas) > 2, "arguments should arrive in several fragments"
    assert "".join(d.function.arguments or "" for d in deltas) == TOOL_CALL[0]["arguments"]  # type: ignore[union-attr]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_embeddings_float_and_base64_agree(fake_openai: FakeOpenAI) -> None:
    with sdk(fake_openai) as client:
        as_b64 = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
        as_float = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="float")
    assert as_b64.object == "list" and len(as_b64.data) == 2
    assert [d.embedding for d in as_b64.data] == [d.embedding for d in as_float.data]
    assert as_float.data[1].index == 1 and len(as_float.data[0].embedding) == 8
    assert fake_openai.requests[0].body["encoding_format"] == "base64"


def test_completions_and_models(fake_openai: FakeOpenAI) -> None:
    with sdk(fake_openai) as client:
        completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say this")
        streamed = list(client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say this", stream=True))
        models = [m.id for m in client.models.list()]
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "fake-openai: say this"
    assert "".join(c.choices[0].text for c in streamed) == "fake-openai: say this"
    assert models == list(fake_openai.models)


def test_wrong_or_missing_key_is_401_in_openai_shape(fake_openai: FakeOpenAI) -> None:
    with (
        sdk(fake_openai, key="sk-wrong-key-0000") as client,
        pytest.raises(openai.AuthenticationError) as err,
    ):
        client.models.list()
    assert err.value.status_code == 401
    assert err.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    assert set(err.value.body) == {"message", "type", "param", "code"}  # type: ignore[arg-type]
    assert fake_openai.recorder.statuses == {401: 1}


def test_validation_errors(fake_openai: FakeOpenAI) -> None:
    with sdk(fake_openai) as client:
        with pytest.raises(openai.BadRequestError) as no_model:
            client.post("/chat/completions", body={"messages": MESSAGES}, cast_to=object)
        with pytest.raises(openai.BadRequestError) as no_messages:
            client.post("/chat/completions", body={"model": "m"}, cast_to=object)
    assert "model" in no_model.value.body["message"]  # type: ignore[index]
    assert no_messages.value.body["param"] == "messages"  # type: ignore[index]
    assert no_messages.value.body["code"] == "missing_required_parameter"  # type: ignore[index]


async def test_malformed_json_is_400(fake_openai: FakeOpenAI) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            fake_openai.url + "/v1/chat/completions",
            data=b'{"model": "m", "messages": [',
            headers={"Authorization": "Bearer sk-fake-1", "content-type": "application/json"},
        ) as resp,
    ):
        assert resp.status == 400
        assert (await resp.json())["error"]["type"] == "invalid_request_error"


def test_scripted_errors_headers_and_order(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.rate_limited(retry_after=2), Reply.server_error(503))
    with sdk(fake_openai) as client:
        with pytest.raises(openai.RateLimitError) as rate:
            client.chat.completions.create(model="m", messages=MESSAGES)
        with pytest.raises(openai.InternalServerError) as server:
            client.chat.completions.create(model="m", messages=MESSAGES)
        ok = client.chat.completions.create(model="m", messages=MESSAGES)
    assert rate.value.response.headers["retry-after"] == "2"
    assert server.value.status_code == 503
    assert ok.choices[0].message.content
    assert fake_openai.recorder.statuses == {429: 1, 503: 1, 200: 1}


def test_path_scoped_reply_waits_for_its_path(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.server_error(path_contains="/embeddings"))
    with sdk(fake_openai) as client:
        client.chat.completions.create(model="m", messages=MESSAGES)
        with pytest.raises(openai.InternalServerError):
            client.embeddings.create(model="e", input="x")


async def test_garbage_and_drop(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.garbage(), Reply(drop=True))
    url = fake_openai.url + "/v1/chat/completions"
    body = {"model": "m", "messages": MESSAGES}
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-fake-1"}) as session:
        async with session.post(url, json=body) as resp:
            assert resp.status == 200
            raw = await resp.read()
        with pytest.raises(ValueError):
            json.loads(raw)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with session.post(url, json=body) as resp:
                await resp.read()
    assert fake_openai.counts["dropped"] == 1
    assert fake_openai.counts.get("disconnects", 0) == 0


def test_delay_before_headers(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(delay=3))
    with sdk(fake_openai, timeout=0.5) as client, pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert fake_openai.wait_for("disconnects"), "the fake should notice the client hung up"


def test_stream_cut_midway(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(cut_after=2))
    seen = []
    with sdk(fake_openai) as client, pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
            seen.append(chunk)
    assert len(seen) == 2
    assert fake_openai.wait_for("streams_cut")


def test_stream_stall_then_client_gives_up(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(stall_after=2, stall=30))
    started = time.monotonic()
    with sdk(fake_openai, timeout=1.0) as client, pytest.raises(openai.APITimeoutError):
        for _ in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
            pass
    assert time.monotonic() - started < 25
    assert fake_openai.wait_for("disconnects")


def test_chunk_delay_still_completes(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(chunk_delay=0.05))
    with sdk(fake_openai) as client:
        chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_max_in_flight_counts_concurrency(fake_openai: FakeOpenAI) -> None:
    fake_openai.always(Reply(delay=0.5))
    async with openai.AsyncOpenAI(base_url=fake_openai.url + "/v1", api_key="sk-fake-1", max_retries=0) as c:
        await asyncio.gather(*(c.chat.completions.create(model="m", messages=MESSAGES) for _ in range(4)))
    assert fake_openai.recorder.max_in_flight == 4
    assert fake_openai.recorder.in_flight == 0


def test_azure_routes_key_and_version(fake_azure: FakeAzure) -> None:
    with openai.AzureOpenAI(
        azure_endpoint=fake_azure.url, api_key="azure-fake-key", api_version="2024-10-21", max_retries=0
    ) as client:
        answer = client.chat.completions.create(model="my-gpt4o-deploy", messages=MESSAGES)
        chunks = list(client.chat.completions.create(model="my-gpt4o-deploy", messages=MESSAGES, stream=True))
        embedding = client.embeddings.create(model="my-gpt4o-deploy", input="x")
    assert answer.model == "gpt-4o-2024-08-06"
    assert answer.choices[0].message.content == "fake-azure: hello fake world"
    assert answer.model_extra and "prompt_filter_results" in answer.model_extra
    assert chunks[0].choices == [] and chunks[0].id == ""  # Azure's prompt-filter chunk
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "fake-azure: hello fake world"
    assert len(embedding.data[0].embedding) == 8
    rec = fake_azure.requests[0]
    assert rec.path == "/openai/deployments/my-gpt4o-deploy/chat/completions"
    assert rec.query == {"api-version": "2024-10-21"}
    assert rec.headers["api-key"] == "azure-fake-key"


async def test_azure_rejects_missing_version_bad_key_unknown_deployment(fake_azure: FakeAzure) -> None:
    body = json.dumps({"messages": MESSAGES})
    base = fake_azure.url + "/openai/deployments"
    cases = [
        (f"{base}/my-gpt4o-deploy/chat/completions", {"api-key": "azure-fake-key"}, 404, "404"),
        (f"{base}/my-gpt4o-deploy/chat/completions?api-version=2024-10-21", {"api-key": "nope"}, 401, "401"),
        (f"{base}/my-gpt4o-deploy/chat/completions?api-version=2024-10-21", {}, 401, "401"),
        (
            f"{base}/nope/chat/completions?api-version=2024-10-21",
            {"api-key": "azure-fake-key"},
            404,
            "DeploymentNotFound",
        ),
    ]
    async with aiohttp.ClientSession() as session:
        for url, headers, status, code in cases:
            async with session.post(url, data=body, headers={**headers, "content-type": "application/json"}) as r:
                assert r.status == status, url
                assert (await r.json())["error"]["code"] == code


def test_reset_clears_script_and_records(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.server_error())
    fake_openai.always(Reply.server_error())
    fake_openai.reset()
    with sdk(fake_openai) as client:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert len(fake_openai.requests) == 1
    assert fake_openai.recorder.statuses == {200: 1}


async def test_trickled_json_body_arrives_whole(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(chunk_delay=0.2))
    url = fake_openai.url + "/v1/chat/completions"
    async with (
        aiohttp.ClientSession(headers={"Authorization": "Bearer sk-fake-1"}) as session,
        session.post(url, json={"model": "m", "messages": MESSAGES}) as resp,
    ):
        started = time.monotonic()
        answer = await resp.json()
        body_time = time.monotonic() - started
    assert answer["choices"][0]["message"]["content"] == "fake-openai: hello fake world"
    assert body_time >= 0.3, "the body should have arrived in parts after the headers"


def test_extra_prefixes() -> None:
    fake = FakeOpenAI(prefixes=("/v1", "/api/v1")).start()
    try:
        with openai.OpenAI(base_url=fake.url + "/api/v1", api_key="sk-fake-1", max_retries=0) as client:
            assert client.chat.completions.create(model="a/b/c", messages=MESSAGES).model == "a/b/c"
    finally:
        fake.stop()

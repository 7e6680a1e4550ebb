"""The hook contract (runtime/core/hooks.py) through real gateway processes, with a third-party plugin
(tests/plugins_example) installed the real way: a dist-info directory whose entry_points.txt declares it
in the `bifrost.plugins` group, on the gateway's PYTHONPATH, and named in config.json `plugins`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from fakes import FakeOpenAI
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from harness import Gateway, read_sse
from harness.config import make_config, openai_provider
from harness.process import CLIENT_KEY, REPO_ROOT

EXAMPLE_DIR = REPO_ROOT / "tests" / "plugins_example"
ANSWER = "answered by the example plugin"
MESSAGES = [{"role": "user", "content": "stream me some words please"}]
FAKE_TEXT = "fake-openai: stream me some words please"


def install_example(site: Path) -> Path:
    """A minimal installed distribution: importlib.metadata finds it on sys.path by its dist-info."""
    info = site / "bifrost_example_plugin-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bifrost-example-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[bifrost.plugins]\nexample = bifrost_example_plugin:ExamplePlugin\n")
    return site


class Plugged:
    def __init__(self, gateway: Gateway, record: Path) -> None:
        self.gateway = gateway
        self.record = record

    def rows(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def calls(self, request_id: str, plugins: int = 1) -> list[tuple[str, str]]:
        """The hook calls for `request_id`, once each of the `plugins` has noted its on_finish (the last hook).
        The answer leaves before on_finish runs, so a client can hold it before the notes are written."""
        deadline = time.monotonic() + 30
        while True:
            rows = [r for r in self.rows() if r["id"] == request_id]
            if sum(r["hook"] == "finish" for r in rows) >= plugins or time.monotonic() > deadline:
                return [(r["tag"], r["hook"]) for r in rows]
            time.sleep(0.02)


@pytest.fixture
def plugged(start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI, tmp_path: Path) -> Callable[..., Plugged]:
    site = install_example(tmp_path / "site")
    record = tmp_path / "hooks.jsonl"

    def start(*entries: dict[str, Any]) -> Plugged:
        plugins = [
            {"name": "example", "enabled": True, "config": {"record": str(record), **e}} for e in entries or ({},)
        ]
        config = make_config({"openai": openai_provider(fake_openai.url)})
        config["plugins"] = plugins
        pythonpath = ":".join((str(REPO_ROOT), str(site), str(EXAMPLE_DIR)))
        return Plugged(start_gateway(config, env={"PYTHONPATH": pythonpath}), record)

    return start


def anthropic_client(gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.base_url + "/anthropic", api_key=CLIENT_KEY, max_retries=0)


def genai_client(gateway: Gateway) -> genai.Client:
    options = types.HttpOptions(
        base_url=gateway.base_url + "/genai", timeout=60_000, retry_options=types.HttpRetryOptions(attempts=1)
    )
    return genai.Client(api_key=CLIENT_KEY, http_options=options)


# -- order, on_finish once, headers and caller ----------------------------------------------------------------
def test_order_and_on_finish_once_plain_and_streaming(plugged: Callable[..., Plugged], fake_openai: FakeOpenAI) -> None:
    p = plugged({"tag": "a", "caller_header": "x-team"}, {"tag": "b"})
    with p.gateway.client(default_headers={"x-team": "search"}) as client:
        raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MESSAGES)
        plain_id = raw.headers["x-request-id"]
        with client.chat.completions.with_streaming_response.create(
            model="openai/gpt-4o-mini", messages=MESSAGES, stream=True
        ) as resp:
            stream_id = resp.headers["x-request-id"]
            text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    assert text == FAKE_TEXT
    expected = [("a", "pre"), ("b", "pre"), ("b", "post"), ("a", "post"), ("a", "finish"), ("b", "finish")]
    assert p.calls(plain_id, plugins=2) == expected
    assert p.calls(stream_id, plugins=2) == expected  # hooks apply to streams too, post-hooks after the last byte
    pre = [r for r in p.rows() if r["id"] == stream_id and r["hook"] == "pre"]
    assert pre[0]["stream"] is True and pre[0]["endpoint"] == "chat" and pre[0]["ingress"] == "openai"
    assert pre[0]["caller"] == "search" and pre[1]["caller"] == "search"  # set by a, seen by b
    posts = [r for r in p.rows() if r["hook"] == "post"]
    assert {(r["id"] == plain_id, r["has_response"]) for r in posts} == {(True, True), (False, False)}


# -- reroute -------------------------------------------------------------------------------------------------
def test_pre_hook_reroutes_before_routing(plugged: Callable[..., Plugged], fake_openai: FakeOpenAI) -> None:
    p = plugged({"reroute_to": "openai/gpt-4o-mini"})
    with p.gateway.client() as client:
        reply = client.chat.completions.create(model="hook/reroute", messages=MESSAGES)  # no such provider
        chunks = list(client.chat.completions.create(model="hook/reroute", messages=MESSAGES, stream=True))
    assert reply.choices[0].message.content == FAKE_TEXT
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == FAKE_TEXT
    assert [r.body["model"] for r in fake_openai.requests] == ["gpt-4o-mini", "gpt-4o-mini"]


# -- refuse, in each ingress's shape ------------------------------------------------------------------------
def test_refusal_in_each_ingress_shape(plugged: Callable[..., Plugged], fake_openai: FakeOpenAI) -> None:
    p = plugged()
    gw = p.gateway
    with gw.client() as client:
        with pytest.raises(openai.PermissionDeniedError) as chat_err:
            client.chat.completions.create(model="hook/refuse", messages=MESSAGES)
        with pytest.raises(openai.PermissionDeniedError) as resp_err:
            client.responses.create(model="hook/refuse", input="hi")
    assert chat_err.value.body["message"] == "refused by the example plugin"  # type: ignore[index]
    assert resp_err.value.body["code"] == "refused"  # type: ignore[index]
    with anthropic_client(gw) as ac, pytest.raises(anthropic.PermissionDeniedError) as ant_err:
        ac.messages.create(model="hook/refuse", max_tokens=10, messages=MESSAGES)  # type: ignore[arg-type]
    assert ant_err.value.body["type"] == "error"  # type: ignore[index]
    assert ant_err.value.body["error"]["message"].startswith("refused by the example plugin")  # type: ignore[index]
    with genai_client(gw) as gclient, pytest.raises(genai_errors.ClientError) as gen_err:
        gclient.models.generate_content(model="hook/refuse", contents="hi")
    assert gen_err.value.code == 403 and (gen_err.value.message or "").startswith("refused by the example plugin")
    assert fake_openai.requests == []  # refused before routing: no provider was called


# -- answer with a response and with a stream, in all four client formats -----------------------------------
def test_answer_with_a_response_in_every_format(plugged: Callable[..., Plugged], fake_openai: FakeOpenAI) -> None:
    gw = plugged().gateway
    with gw.client() as client:
        assert (
            client.chat.completions.create(model="hook/answer", messages=MESSAGES).choices[0].message.content == ANSWER
        )
        assert client.responses.create(model="hook/answer", input="hi").output_text == ANSWER
    with anthropic_client(gw) as ac:  # closed here: an SDK client left to the GC leaks its socket
        message = ac.messages.create(model="hook/answer", max_tokens=10, messages=MESSAGES)  # type: ignore[arg-type]
    assert message.content[0].text == ANSWER  # type: ignore[union-attr]
    assert message.usage.output_tokens == 5
    with genai_client(gw) as gclient:
        assert gclient.models.generate_content(model="hook/answer", contents="hi").text == ANSWER
    assert fake_openai.requests == []


def test_answer_with_a_stream_in_every_format(plugged: Callable[..., Plugged], fake_openai: FakeOpenAI) -> None:
    gw = plugged().gateway
    with gw.client() as client:
        chunks = list(client.chat.completions.create(model="hook/answer", messages=MESSAGES, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
        events = list(client.responses.create(model="hook/answer", input="hi", stream=True))
        assert events[-1].type == "response.completed"
        assert events[-1].response.output_text == ANSWER  # type: ignore[union-attr]
    with (
        anthropic_client(gw) as ac,
        ac.messages.stream(model="hook/answer", max_tokens=10, messages=MESSAGES) as stream,  # type: ignore[arg-type]
    ):
        assert stream.get_final_text() == ANSWER
    with genai_client(gw) as gclient:
        parts = gclient.models.generate_content_stream(model="hook/answer", contents="hi")
        assert "".join(part.text or "" for part in parts) == ANSWER
    assert fake_openai.requests == []


# -- stream observer -----------------------------------------------------------------------------------------
async def test_stream_observer_stops_the_stream(plugged: Callable[..., Plugged], fake_openai: FakeOpenAI) -> None:
    p = plugged({"stop_on": "words"})
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "stream": True}
    async with aiohttp.ClientSession() as session, session.post(p.gateway.url("/v1/chat/completions"), json=body) as r:
        assert r.status == 200
        rid = r.headers["x-request-id"]
        events, _cut = await read_sse(r)
    assert not any(e.is_done for e in events), "a stopped stream never ends with [DONE]"
    last = events[-1].json()
    assert last["error"]["code"] == "output_check"
    assert "words" not in "".join(
        (e.json().get("choices") or [{}])[0].get("delta", {}).get("content") or "" for e in events[:-1]
    )
    assert [hook for _tag, hook in p.calls(rid)] == ["pre", "post", "finish"]


# -- a hook that raises ----------------------------------------------------------------------------------------
def test_hook_that_raises_is_a_json_500_and_on_finish_runs_once(plugged: Callable[..., Plugged]) -> None:
    p = plugged()
    with p.gateway.client() as client, pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="hook/raise", messages=MESSAGES)
    assert err.value.status_code == 500
    assert err.value.body["type"] == "internal_error"  # type: ignore[index]
    rid = err.value.response.headers["x-request-id"]
    assert [hook for _tag, hook in p.calls(rid)] == ["pre", "post", "finish"]
    finish = [r for r in p.rows() if r["id"] == rid and r["hook"] == "finish"]
    assert finish[0]["status"] == 500


# -- the answer leaves before on_finish --------------------------------------------------------------------------
def finish_note(p: Plugged, request_id: str) -> dict[str, Any]:
    """The plugin's on_finish note for `request_id`, once on_finish has returned (it may still be waiting)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        notes = [r for r in p.rows() if r["id"] == request_id and r["hook"] == "finish"]
        if notes:
            return notes[0]
        time.sleep(0.05)
    raise AssertionError(f"no on_finish note for {request_id}")


def test_the_answer_is_sent_before_on_finish_runs(plugged: Callable[..., Plugged], tmp_path: Path) -> None:
    # on_finish (the log row, metrics) costs the client nothing: it runs once the answer has left. The
    # plugin's on_finish blocks until the client has read its answer (the marker file); had it run first,
    # the client could not read it and the note says answer_was_read False.
    marker = tmp_path / "answer-read"
    p = plugged({"finish_waits_for": str(marker)})
    with p.gateway.client(default_headers={"x-finish-waits": "1"}) as client:
        raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MESSAGES)
        assert raw.parse().choices[0].message.content
        marker.write_text("the client has its answer")
        note = finish_note(p, raw.headers["x-request-id"])
        assert note["answer_was_read"] is True and note["status"] == 200
        marker.unlink()
        with pytest.raises(openai.BadRequestError) as err:  # an error answer leaves first too
            client.chat.completions.create(model="nosuch/model", messages=MESSAGES)
        marker.write_text("the client has its answer")
        note = finish_note(p, err.value.response.headers["x-request-id"])
        assert note["answer_was_read"] is True and note["status"] == 400

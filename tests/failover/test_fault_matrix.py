"""Issue 13's fault matrix: one fake provider whose fault is chosen by the model name, a primary with that
fault and a healthy fallback on the same fake, through a real gateway with the default failure policy.

Each case asserts what the client receives (a complete answer, or a clean error in bounded time, never a
truncated success) and how many attempts each target saw (the fake records every request's model).
Breakers, the adaptive balancer, model groups and mid-stream prefill have their own suites
(tests/health, tests/groups, tests/resume); this one pins the policy of docs/failover.md end to end.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import aiohttp
import openai
import pytest
from fakes import FakeOpenAI, Reply
from fakes.recorder import RecordedRequest
from harness import Gateway, StartGateway, make_config, openai_provider, read_sse

PROMPT = "say the matrix"
ANSWER = "fake-openai: say the matrix"  # the fake's answer, the same for every model (a replay can match it)


def chunk(content: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-m",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }


def sse(*events: Any) -> bytes:
    return b"".join(b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n" for e in events)


CONTEXT = Reply.error(
    400, "This model's maximum context length is 8192 tokens.", "invalid_request_error", code="context_length_exceeded"
)
FILTERED = Reply.error(
    400, "The prompt was filtered by the content filter.", "invalid_request_error", code="content_filter"
)
STREAM_WITH_GARBAGE = sse(chunk("fake-openai: say "), b"{truncated", chunk("the matrix", "stop"), b"[DONE]")
STREAM_WITHOUT_DONE = sse(chunk("fake-openai: say "), chunk("the matrix", "stop"))


class Faults:
    """model name -> the replies of its first requests (then a normal answer): the fake's responder."""

    def __init__(self, plan: dict[str, list[Reply] | Reply]) -> None:
        self.plan = plan
        self.seen: Counter[str] = Counter()

    def __call__(self, request: RecordedRequest) -> Reply | None:
        model = request.model or ""
        self.seen[model] += 1
        replies = self.plan.get(model)
        if isinstance(replies, Reply):
            return replies  # every request
        if replies and self.seen[model] <= len(replies):
            return replies[self.seen[model] - 1]
        return None


PLAN: dict[str, list[Reply] | Reply] = {
    "rate-limited-retry-after": [Reply.rate_limited(retry_after=0.05)],
    "rate-limited": Reply.rate_limited(),
    "unavailable-once": [Reply.server_error(503)],
    "unavailable": Reply.server_error(503),
    "reset": Reply(drop=True),
    "silent": Reply(delay=20),
    "slow-first-token": Reply(stall_after=0, stall=20),
    "cut-after-2": Reply(cut_after=2),
    "stall": Reply(stall_after=2, stall=20),
    "malformed-event": Reply(raw=STREAM_WITH_GARBAGE, content_type="text/event-stream"),
    "no-done": Reply(raw=STREAM_WITHOUT_DONE, content_type="text/event-stream"),
    "context-length": CONTEXT,
    "content-filter": FILTERED,
}


@pytest.fixture
def gateway(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> Gateway:
    fake_openai.responder = Faults(PLAN)
    provider = openai_provider(
        fake_openai.url,
        max_retries=2,
        retry_backoff_initial_ms=20,
        retry_backoff_max_ms=200,
        default_request_timeout_in_seconds=1,
        first_token_timeout_in_seconds=1,
        stream_idle_timeout_in_seconds=1,
    )
    return start_gateway(make_config({"openai": provider}))


def attempts(fake: FakeOpenAI) -> dict[str, int]:
    return dict(Counter(r.model for r in fake.requests if r.model))


def ask(gateway: Gateway, fault: str) -> Any:
    with gateway.client() as client:
        return client.chat.completions.with_raw_response.create(
            model=f"openai/{fault}",
            messages=[{"role": "user", "content": PROMPT}],
            extra_body={"fallbacks": ["openai/healthy"]},
        )


# fault -> (which target answers, attempts the primary saw, attempts the fallback saw)
PLAIN: dict[str, tuple[str, int, int]] = {
    "rate-limited-retry-after": ("rate-limited-retry-after", 2, 0),  # Retry-After under the cap: waited out
    "rate-limited": ("healthy", 1, 1),  # no Retry-After: fail over at once
    "unavailable-once": ("unavailable-once", 2, 0),  # 5xx: retried with backoff
    "unavailable": ("healthy", 3, 1),  # 5xx every time: 1 + 2 retries, then the fallback
    "reset": ("healthy", 1, 1),  # a dropped connection: no same-target retry
    "silent": ("healthy", 1, 1),  # no response within the timeout: no same-target retry
}


@pytest.mark.parametrize("fault", list(PLAIN))
def test_plain_answers_are_rescued_as_the_policy_says(gateway: Gateway, fake_openai: FakeOpenAI, fault: str) -> None:
    started = time.monotonic()
    raw = ask(gateway, fault)
    answer = raw.parse()
    target, primary, fallback = PLAIN[fault]
    assert answer.choices[0].message.content == ANSWER
    assert answer.model == target
    assert attempts(fake_openai) == {fault: primary, **({"healthy": fallback} if fallback else {})}
    assert time.monotonic() - started < 10, "bounded: one timeout at most, never timeout x attempts"


@pytest.mark.parametrize(
    ("fault", "code"), [("context-length", "context_length_exceeded"), ("content-filter", "content_filter")]
)
def test_errors_that_another_target_cannot_fix_are_returned_cleanly(
    gateway: Gateway, fake_openai: FakeOpenAI, fault: str, code: str
) -> None:
    # The fallback's window is unknown to the catalog: a larger one cannot be shown, so it is not tried.
    with pytest.raises(openai.BadRequestError) as err:
        ask(gateway, fault)
    assert err.value.code == code
    assert attempts(fake_openai) == {fault: 1}


# fault -> attempts the primary and the fallback saw; every stream must end complete with [DONE].
STREAMS: dict[str, tuple[int, int]] = {
    "slow-first-token": (1, 1),  # headers, then nothing: the first-token timeout fails over before any byte
    "cut-after-2": (1, 1),  # cut after bytes reached the client: the fallback repeats the text, the rest is relayed
    "stall": (1, 1),  # stalled past the idle timeout after bytes: recovered the same way
    "malformed-event": (1, 0),  # the bad event is skipped and counted, the stream goes on
    "no-done": (1, 0),  # ended cleanly after its finish reason: complete, the client gets [DONE]
}


@pytest.mark.parametrize("fault", list(STREAMS))
async def test_streams_end_complete_with_one_done(gateway: Gateway, fake_openai: FakeOpenAI, fault: str) -> None:
    body = {
        "model": f"openai/{fault}",
        "stream": True,
        "messages": [{"role": "user", "content": PROMPT}],
        "fallbacks": ["openai/healthy"],
    }
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.post(gateway.url("/v1/chat/completions"), json=body) as resp,
    ):
        assert resp.status == 200
        events, cut = await read_sse(resp)
        rid = resp.headers["x-request-id"]
    assert cut is None
    assert not any(e.is_error for e in events), [e.data for e in events]
    assert sum(1 for e in events if e.is_done) == 1 and events[-1].is_done
    text = "".join(
        c["delta"].get("content") or "" for e in events if not e.is_done for c in e.json().get("choices", [])
    )
    assert text == ANSWER, "never a truncated success"
    primary, fallback = STREAMS[fault]
    assert attempts(fake_openai) == {fault: primary, **({"healthy": fallback} if fallback else {})}
    row = gateway.log.row_for(rid)
    assert row["status"] == 200
    if fault == "malformed-event":
        assert row["skipped_events"] == 1

"""What the packaged nginx.conf does when an instance fails, exactly as docs/cluster.md and the file's own
comments say (`proxy_next_upstream error timeout http_502 http_503`, no `non_idempotent`, max_fails=3).

The "instances" here are fake OpenAI servers, so each one's answer is scripted and every request it
received is counted: the test sees which instance got what, which a real gateway would not show.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import FakeOpenAI, Reply
from harness.nginx import NginxServer, start_nginx
from harness.process import free_port

KEY = "sk-fake-nginx"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def failing() -> Iterator[FakeOpenAI]:
    """An instance that answers every request 502."""
    fake = FakeOpenAI(keys=(KEY,), name="failing").start()
    fake.always(Reply.error(502, "upstream failed", "server_error"))
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def healthy() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(keys=(KEY,), name="healthy").start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def nginx_for(tmp_path: Path) -> Iterator[list[NginxServer]]:
    started: list[NginxServer] = []
    yield started
    for server in started:
        server.stop()


def call(nginx: NginxServer, method: str, path: str) -> int:
    data = json.dumps(CHAT).encode() if method == "POST" else None
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    request = urllib.request.Request(nginx.url + path, data=data, method=method, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        err.close()
        return int(err.code)


def test_a_post_an_instance_received_is_never_sent_to_another(
    failing: FakeOpenAI, healthy: FakeOpenAI, nginx_for: list[NginxServer], tmp_path: Path
) -> None:
    nginx = start_nginx(tmp_path / "nginx", [failing.port, healthy.port])
    nginx_for.append(nginx)
    statuses = [call(nginx, "POST", "/v1/chat/completions") for _ in range(12)]
    to_failing, to_healthy = len(failing.requests_to("/chat")), len(healthy.requests_to("/chat"))
    print(f"POST x12 over [502, ok]: {statuses}; failing got {to_failing}, healthy {to_healthy}")
    # Each POST reached exactly one instance: the 502 went back to the client, never re-sent (a call that
    # may have reached a provider must not be billed twice).
    assert to_failing + to_healthy == 12
    assert statuses.count(502) == to_failing and statuses.count(200) == to_healthy
    # ... and an answered 502 to a POST is not an instance failure for max_fails: round robin keeps
    # sending it its share (a provider's 502 relayed by a healthy gateway must not take it out).
    assert to_failing == 6


def test_a_get_answered_502_goes_to_the_next_instance_and_counts_as_a_failure(
    failing: FakeOpenAI, healthy: FakeOpenAI, nginx_for: list[NginxServer], tmp_path: Path
) -> None:
    nginx = start_nginx(tmp_path / "nginx", [failing.port, healthy.port])
    nginx_for.append(nginx)
    statuses = [call(nginx, "GET", "/v1/models") for _ in range(12)]
    assert statuses == [200] * 12
    assert len(healthy.requests_to("/models")) == 12
    # max_fails=3 fail_timeout=10s: after its third failure the failing instance is left out.
    assert len(failing.requests_to("/models")) == 3


def test_a_post_no_instance_received_goes_to_the_next(
    healthy: FakeOpenAI, nginx_for: list[NginxServer], tmp_path: Path
) -> None:
    dead = free_port()  # nothing listens: connection refused, as for a killed instance
    nginx = start_nginx(tmp_path / "nginx", [dead, healthy.port])
    nginx_for.append(nginx)
    statuses = [call(nginx, "POST", "/v1/chat/completions") for _ in range(8)]
    assert statuses == [200] * 8
    assert len(healthy.requests_to("/chat")) == 8

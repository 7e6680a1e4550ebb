"""Accounting after failover (issue 13 item 7): a stream that broke and could not be continued is
billed what it streamed: the provider's usage when it reported one, else an estimate marked so."""

from __future__ import annotations

import pytest
from fakes import FakeOpenAI, Reply
from harness import StartGateway
from resume_helpers import DELIVERED, FULL, MESSAGES, PRICES, attempts_of, config, stream_raw


async def test_a_cut_stream_without_usage_is_billed_an_estimate_of_what_it_streamed(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(content=FULL, cut_after=3))
    gateway = start_gateway(config(fake_openai.url))
    request = {"model": "openai/gpt-4o", "messages": MESSAGES, "stream": True}
    events, rid = await stream_raw(gateway, request)
    assert events[-1].is_error
    row = gateway.log.row_for(rid)
    (broken,) = attempts_of(row)
    assert broken["after_first_byte"] is True
    assert broken["delivered_chars"] == len(DELIVERED)
    assert broken["usage_estimated"] is True
    assert row["prompt_tokens"] == broken["usage"]["prompt_tokens"] > 0
    assert row["completion_tokens"] == broken["usage"]["completion_tokens"] > 0
    rate_in, rate_out = PRICES["openai"]
    assert row["cost"] == pytest.approx(row["prompt_tokens"] * rate_in + row["completion_tokens"] * rate_out)


async def test_a_failure_before_the_first_byte_bills_nothing(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    fake_openai.always(Reply.server_error(503))
    fake_openai_2.always(Reply(content=FULL))
    gateway = start_gateway(config(fake_openai.url, backup_url=fake_openai_2.url))
    request = {"model": "openai/gpt-4o", "messages": MESSAGES, "stream": True, "fallbacks": ["backup/gpt-4o-mini"]}
    events, rid = await stream_raw(gateway, request)
    assert events[-1].is_done
    row = gateway.log.row_for(rid)
    (failed,) = attempts_of(row)
    assert failed["status"] == 503 and "usage" not in failed, "a 5xx bills nothing"
    rate_in, rate_out = PRICES["backup"]
    assert row["cost"] == pytest.approx(row["prompt_tokens"] * rate_in + row["completion_tokens"] * rate_out)

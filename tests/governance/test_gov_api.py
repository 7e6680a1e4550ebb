"""/api/governance/teams|customers|budgets|rate-limits on a real gateway process: CRUD round trips in Go
Bifrost's shapes, live effect (a budget lowered through the API refuses the next request), current usage
read from the ledger, referential errors, validation errors with their config path, and the log filters
by virtual key and team."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from fakes import FakeOpenAI, Reply
from harness import Gateway
from harness.config import make_config, openai_provider
from harness.process import StartGateway

from runtime.requestlog.filters import LogFilter, Page
from runtime.requestlog.record import COLUMNS
from runtime.stores.logs_sqlite.queries import LogQueries
from runtime.stores.logs_sqlite.writer import LogWriter

from .test_governance_wired import COST, MAX_TOKENS, MESSAGES, USAGE, VK, wired_config
from .test_vk_admin import call

G = "/api/governance"


def chat_status(gw: Gateway, api_key: str = VK) -> int:
    with gw.client(api_key=api_key, max_retries=0) as client:
        try:
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=MAX_TOKENS)
        except openai.APIStatusError as err:
            return err.status_code
    return 200


def wait_for(read: Any, expected: Any, timeout: float = 10.0) -> Any:
    """Poll `read()` until it returns `expected` (a background lease may land just after an answer)."""
    deadline = time.monotonic() + timeout
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value


@pytest.fixture
def gw(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> Gateway:
    fake_openai.always(Reply(usage=USAGE))
    return start_gateway(wired_config(fake_openai.url, budget_requests=100, requests_per_minute=50))


def test_crud_round_trips_in_go_shapes(gw: Gateway) -> None:
    # budgets
    status, created = call(gw, "POST", f"{G}/budgets", {"id": "b-new", "max_limit": 5, "reset_duration": "1w"})
    assert status == 201, created
    assert created["budget"]["id"] == "b-new" and created["budget"]["current_usage"] == 0
    assert created["budget"]["calendar_aligned"] is False and created["budget"]["reset_at"]
    status, listed = call(gw, "GET", f"{G}/budgets")
    assert status == 200 and listed["count"] == 2 and {b["id"] for b in listed["budgets"]} == {"b-wired", "b-new"}
    status, updated = call(gw, "PUT", f"{G}/budgets/b-new", {"max_limit": 7.5, "calendar_aligned": True})
    assert status == 200 and updated["budget"]["max_limit"] == 7.5 and updated["budget"]["calendar_aligned"] is True
    assert call(gw, "GET", f"{G}/budgets/b-new")[1]["budget"]["max_limit"] == 7.5

    # rate limits: a null clears a field (Go's update semantics)
    status, created = call(
        gw, "POST", f"{G}/rate-limits", {"id": "rl-new", "token_max_limit": 1000, "token_reset_duration": "1h"}
    )
    assert status == 201, created
    rl = created["rate_limit"]
    assert rl["token_current_usage"] == 0 and rl["request_max_limit"] is None and rl["request_current_usage"] is None
    body = {
        "request_max_limit": 5,
        "request_reset_duration": "1m",
        "token_max_limit": None,
        "token_reset_duration": None,
    }
    status, updated = call(gw, "PUT", f"{G}/rate-limits/rl-new", body)
    assert status == 200, updated
    assert updated["rate_limit"]["token_max_limit"] is None and updated["rate_limit"]["request_max_limit"] == 5

    # customers, with Go's inline budget (created and linked)
    status, created = call(
        gw,
        "POST",
        f"{G}/customers",
        {"id": "c1", "name": "Acme", "budget": {"id": "cust-budget", "max_limit": 3, "reset_duration": "1d"}},
    )
    assert status == 201, created
    customer = created["customer"]
    assert customer["budget_id"] and customer["budget"]["max_limit"] == 3 and customer["budget"]["current_usage"] == 0
    inline_budget = customer["budget_id"]
    assert inline_budget == "cust-budget"
    # an inline budget on update changes the customer's own budget in place
    status, updated = call(gw, "PUT", f"{G}/customers/c1", {"budget": {"max_limit": 4}})
    assert status == 200 and updated["customer"]["budget_id"] == inline_budget
    assert updated["customer"]["budget"]["max_limit"] == 4

    # teams
    status, created = call(
        gw, "POST", f"{G}/teams", {"id": "t1", "name": "Search", "customer_id": "c1", "rate_limit_id": "rl-new"}
    )
    assert status == 201, created
    team = created["team"]
    assert team["customer"] == {"id": "c1", "name": "Acme"} and team["rate_limit"]["request_max_limit"] == 5
    status, listed = call(gw, "GET", f"{G}/teams?customer_id=c1")
    assert status == 200 and listed["count"] == 1 and listed["teams"][0]["id"] == "t1"
    assert call(gw, "GET", f"{G}/customers/c1")[1]["customer"]["teams"] == [{"id": "t1", "name": "Search"}]
    assert call(gw, "PUT", f"{G}/teams/t1", {"name": "Search 2"})[1]["team"]["name"] == "Search 2"
    # Go's list parameters: search (name or id), limit, offset; total_count counts every match
    status, found = call(gw, "GET", f"{G}/budgets?search=B-&limit=1&offset=1")
    assert status == 200 and found["count"] == 1 and found["total_count"] == 2, found
    assert (found["limit"], found["offset"]) == (1, 1)
    assert call(gw, "GET", f"{G}/customers?search=acme")[1]["customers"][0]["id"] == "c1"
    assert call(gw, "GET", f"{G}/teams?limit=-1")[1]["error"]["param"] == "limit"

    # the file holds them, as config.json entries
    stored = (gw.app_dir / "config.json").read_text()
    assert '"t1"' in stored and '"rl-new"' in stored and "current_usage" not in stored

    # referential errors: in use -> 409 naming who refers to it
    status, err = call(gw, "DELETE", f"{G}/customers/c1")
    assert status == 409 and err["error"]["code"] == "in_use" and "governance.teams[0]" in err["error"]["message"]
    status, err = call(gw, "DELETE", f"{G}/rate-limits/rl-new")
    assert status == 409 and err["error"]["code"] == "in_use"
    status, err = call(gw, "DELETE", f"{G}/budgets/b-wired")
    assert status == 409 and "virtual_keys[0]" in err["error"]["message"]
    # in order, each goes
    assert call(gw, "DELETE", f"{G}/teams/t1")[0] == 200
    assert call(gw, "DELETE", f"{G}/customers/c1")[0] == 200
    for path in ("rate-limits/rl-new", f"budgets/{inline_budget}", "budgets/b-new"):
        assert call(gw, "DELETE", f"{G}/{path}")[0] == 200, path
    assert call(gw, "GET", f"{G}/teams/t1")[0] == 404
    assert call(gw, "GET", f"{G}/budgets")[1]["count"] == 1

    # the key still works: nothing dangling was left behind
    assert chat_status(gw) == 200


def test_bad_input_is_answered_with_its_path(gw: Gateway) -> None:
    status, err = call(gw, "POST", f"{G}/budgets", {"id": "b-x", "max_limit": 5, "reset_duration": "soon"})
    assert status == 400 and err["error"]["param"] == "governance.budgets[1].reset_duration", err
    status, err = call(gw, "POST", f"{G}/teams", {"name": "T", "customer_id": "nobody"})
    assert status == 400 and err["error"]["param"] == "governance.teams[0].customer_id", err
    status, err = call(gw, "POST", f"{G}/budgets", {"max_limit": -1, "reset_duration": "1d"})
    assert status == 400 and err["error"]["param"].endswith(".max_limit")
    status, err = call(gw, "POST", f"{G}/teams", {"name": "T", "colour": "red"})
    assert status == 400 and err["error"]["param"] == "colour"
    status, err = call(gw, "POST", f"{G}/teams", {"customer_id": None})
    assert status == 400 and err["error"]["param"] == "name"
    status, err = call(gw, "POST", f"{G}/customers", {"name": "C", "budget": {"max_limit": 1, "every": "1d"}})
    assert status == 400 and err["error"]["param"] == "budget.every"
    status, err = call(gw, "POST", f"{G}/budgets", {"id": "b-wired", "max_limit": 1, "reset_duration": "1d"})
    assert status == 409 and err["error"]["code"] == "already_exists"
    assert call(gw, "PUT", f"{G}/budgets/nope", {"max_limit": 1})[0] == 404
    assert call(gw, "DELETE", f"{G}/rate-limits/nope")[0] == 404
    status, err = call(gw, "PUT", f"{G}/budgets/b-wired", {"id": "other"})
    assert status == 400 and err["error"]["param"] == "id"
    # nothing of the refused edits reached the file
    assert call(gw, "GET", f"{G}/budgets")[1]["count"] == 1 and call(gw, "GET", f"{G}/teams")[1]["count"] == 0


def test_usage_after_requests_and_a_lowered_budget_refuses_the_next_request(gw: Gateway) -> None:
    for _ in range(3):
        assert chat_status(gw) == 200

    def budget_used() -> float:
        return float(call(gw, "GET", f"{G}/budgets/b-wired")[1]["budget"]["current_usage"])

    def requests_used() -> int:
        return int(call(gw, "GET", f"{G}/rate-limits/rl-wired")[1]["rate_limit"]["request_current_usage"])

    assert wait_for(budget_used, pytest.approx(3 * COST)) == pytest.approx(3 * COST)
    assert wait_for(requests_used, 3) == 3
    one = call(gw, "GET", f"{G}/budgets/b-wired")[1]["budget"]
    assert one["last_reset"] < one["reset_at"]  # the window's start and end (RFC 3339, UTC)

    # the key's own view carries its budget and rate limit with their usage
    status, key = call(gw, "GET", f"{G}/virtual-keys/vk-wired")
    assert status == 200
    assert key["virtual_key"]["budget"]["current_usage"] == pytest.approx(3 * COST)
    assert key["virtual_key"]["rate_limit"]["request_current_usage"] == 3
    assert call(gw, "GET", f"{G}/virtual-keys")[1]["virtual_keys"][0]["budget"]["id"] == "b-wired"

    # lowered to what was spent: the next request is refused at once, without a restart
    status, updated = call(gw, "PUT", f"{G}/budgets/b-wired", {"max_limit": 3 * COST})
    assert status == 200, updated
    assert chat_status(gw) == 402
    # raised again: admitted again
    assert call(gw, "PUT", f"{G}/budgets/b-wired", {"max_limit": 10 * COST})[0] == 200
    assert chat_status(gw) == 200


def test_a_virtual_key_created_with_an_inline_budget_is_held_to_it(gw: Gateway) -> None:
    status, created = call(
        gw, "POST", f"{G}/virtual-keys", {"name": "tiny", "budget": {"max_limit": COST, "reset_duration": "1d"}}
    )
    assert status == 201, created
    value = created["virtual_key"]["value"]
    assert created["virtual_key"]["budget"]["max_limit"] == COST
    assert chat_status(gw, value) == 200
    assert chat_status(gw, value) == 402  # one request's worth, spent


def test_logs_filter_by_virtual_key_and_team_and_group_by_key(gw: Gateway) -> None:
    status, created = call(gw, "POST", f"{G}/virtual-keys", {"name": "other"})
    assert status == 201
    other = created["virtual_key"]
    assert call(gw, "POST", f"{G}/teams", {"id": "t-x", "name": "X"})[0] == 201
    assert call(gw, "POST", f"{G}/teams", {"id": "t-empty", "name": "Nobody"})[0] == 201
    assert call(gw, "PUT", f"{G}/virtual-keys/vk-wired", {"team_id": "t-x"})[0] == 200
    for _ in range(2):
        assert chat_status(gw) == 200
    assert chat_status(gw, other["value"]) == 200
    gw.log.wait_rows(3)

    def ids(query: str) -> list[Any]:
        status, page = call(gw, "GET", f"/api/logs?{query}")
        assert status == 200, page
        assert page["total"] == len(page["items"])
        return sorted(r["virtual_key_id"] for r in page["items"])

    assert ids("virtual_key_id=vk-wired") == ["vk-wired", "vk-wired"]
    assert ids(f"virtual_key_id={other['id']}") == [other["id"]]
    assert ids(f"virtual_key_id=vk-wired,{other['id']}") == sorted(["vk-wired", "vk-wired", other["id"]])
    assert ids("team_id=t-x") == ["vk-wired", "vk-wired"]
    assert ids(f"team_id=t-x&virtual_key_id={other['id']}") == []  # both: their intersection
    assert ids("team_id=t-empty") == []
    status, err = call(gw, "GET", "/api/logs?team_id=nope")
    assert status == 400 and err["error"]["param"] == "team_id"

    status, stats = call(gw, "GET", "/api/logs/stats?team_id=t-x")
    assert status == 200 and stats["count"] == 2 and stats["cost"] == pytest.approx(2 * COST)
    status, stats = call(gw, "GET", "/api/logs/stats?group_by=virtual_key")
    assert status == 200
    by_key = {g["virtual_key_id"]: g for g in stats["by_virtual_key"]}
    assert by_key["vk-wired"]["count"] == 2 and by_key["vk-wired"]["cost"] == pytest.approx(2 * COST)
    assert by_key[other["id"]]["count"] == 1
    assert call(gw, "GET", "/api/logs/stats?group_by=colour")[0] == 400
    status, hist = call(gw, "GET", "/api/logs/histogram?virtual_key_id=vk-wired&buckets=5")
    assert status == 200 and sum(b["count"] for b in hist["series"]) == 2


async def test_key_filtered_log_queries_seek_the_time_index(tmp_path: Path) -> None:
    """A key filter reads the table (no covering index has the column), but the time range is still a
    range seek on an index, never a scan of the whole log."""
    writer = LogWriter(tmp_path / "logs.db", capacity=100)
    await writer.start()
    row: dict[str, Any] = {c: 0 for c in COLUMNS}
    row.update(id="r1", ts_ms=1, endpoint="chat", provider="openai", model="m", virtual_key_id="vk")
    row.update(input=None, output=None, attempts=None, error=None, error_type=None, cost=None)
    writer.submit(tuple(row[c] for c in COLUMNS))
    await writer.close()
    f = LogFilter(since_ms=0, until_ms=10, virtual_key_ids=("vk", "vk2"))
    where, params = f.where()
    db = sqlite3.connect(tmp_path / "logs.db")
    try:
        for sql in (
            f"SELECT count(*), sum(cost) FROM logs WHERE {where}",
            f"SELECT virtual_key_id, count(*) FROM logs WHERE {where} GROUP BY virtual_key_id",
            f"SELECT id FROM logs WHERE {where} ORDER BY ts_ms DESC LIMIT 50",
        ):
            plan = " | ".join(str(step[-1]) for step in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "USING INDEX" in plan and "ts_ms>" in plan.replace(" ", ""), (sql, plan)
    finally:
        db.close()
    q = LogQueries(tmp_path / "logs.db")
    try:
        assert [g["virtual_key_id"] for g in await q.by_virtual_key(f)] == ["vk"]
        assert (await q.list(f, Page()))["total"] == 1
        assert (await q.list(LogFilter(virtual_key_ids=()), Page()))["total"] == 0
    finally:
        await q.close()


def test_an_ungoverned_gateway_stores_entities_and_says_a_restart_applies_them(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gw = start_gateway(make_config({"openai": openai_provider(fake_openai.url)}))
    status, created = call(gw, "POST", f"{G}/budgets", {"id": "b1", "max_limit": 1, "reset_duration": "1d"})
    assert status == 201 and created["restart_required"] is True, created
    assert created["budget"]["current_usage"] is None  # no limits run here: nothing counts yet
    status, created = call(gw, "POST", f"{G}/teams", {"name": "T", "budget_id": "b1"})
    assert status == 201 and created["restart_required"] is True
    assert created["team"]["budget"]["id"] == "b1"
    assert '"b1"' in (gw.app_dir / "config.json").read_text()

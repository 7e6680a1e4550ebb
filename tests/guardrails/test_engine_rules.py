"""The engine on real configs (regex and wordlist detectors, a real webhook service on loopback): CEL
gates and findings-reading rules, sampling, actions and their strength, redaction of a body in place,
remote failure policies, the admin console's try_text, and the log scrub. No matched value ever appears
in an error message or a Fired record."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from runtime.config.load import ConfigError
from runtime.core.context import RequestContext
from runtime.errors import GuardrailBlocked, GuardrailUnavailable
from runtime.guardrails.config import parse_guardrails
from runtime.guardrails.engine import GuardrailEngine, RequestState, try_text
from runtime.guardrails.scrub import scrub
from runtime.guardrails.types import GuardrailsConfig

CARD = "4111 1111 1111 1111"
CARD_RE = r"\b(?:\d[ -]?){15}\d\b"


def provider(pid: int, kind: str, policy: str, action: str, **config: Any) -> dict[str, Any]:
    return {"id": pid, "provider_name": kind, "policy_name": policy, "config": {**config, "action": action}}


def cards(pid: int = 1, action: str = "redact") -> dict[str, Any]:
    return provider(pid, "regex", "cards", action, patterns=[{"pattern": CARD_RE, "description": "card"}])


def words(pid: int = 2, action: str = "block", **extra: Any) -> dict[str, Any]:
    return provider(pid, "wordlist", "codenames", action, words=["falcon", "blue bird"], **extra)


def rule(
    rid: int, name: str, ids: list[int], cel: str = "true", apply_to: str = "both", **extra: Any
) -> dict[str, Any]:
    return {"id": rid, "name": name, "cel_expression": cel, "apply_to": apply_to, "provider_config_ids": ids, **extra}


def config(providers: list[dict[str, Any]], rules: list[dict[str, Any]]) -> GuardrailsConfig:
    parsed = parse_guardrails({"guardrail_providers": providers, "guardrail_rules": rules}, [])
    assert parsed is not None
    return parsed


def chat(*texts: str, endpoint: str = "chat") -> RequestContext:
    ctx = RequestContext("req-1", endpoint)
    ctx.body = {
        "model": "openai/gpt-4o",
        "messages": [{"role": "system", "content": texts[0]}]
        + [{"role": "user", "content": [{"type": "text", "text": t}]} for t in texts[1:]],
    }
    ctx.headers = {"X-Tenant": "acme", "Authorization": "Bearer sk-secret"}  # type: ignore[assignment]
    return ctx


async def test_redact_masks_every_message_in_place_and_records_without_values() -> None:
    engine = GuardrailEngine(config([cards()], [rule(1, "mask", [1])]))
    ctx = chat(f"system sees {CARD}", f"pay with {CARD}, or 5500-0000-0000-0004")
    state = RequestState()
    await engine.check_input(ctx, None, state)
    assert ctx.body["messages"][0]["content"] == "system sees [REDACTED:regex:card]"
    assert ctx.body["messages"][1]["content"][0]["text"] == "pay with [REDACTED:regex:card], or [REDACTED:regex:card]"
    assert ctx.guardrails == [
        {"rule": "mask", "provider": "cards", "stage": "input", "action": "redact", "types": ["regex:card"], "count": 3}
    ]
    assert CARD not in json.dumps(ctx.guardrails)
    assert CARD in state.values  # kept for the scrub only


async def test_a_sixteen_digit_run_inside_a_longer_number_is_not_a_card() -> None:
    engine = GuardrailEngine(config([cards()], [rule(1, "mask", [1])]))
    ctx = chat("order 12345678901234567890123 shipped")
    await engine.check_input(ctx, None, RequestState())
    assert ctx.body["messages"][0]["content"] == "order 12345678901234567890123 shipped"
    assert ctx.guardrails is None


async def test_block_wins_over_redact_and_names_the_rule_never_the_value() -> None:
    engine = GuardrailEngine(config([cards(), words()], [rule(1, "mask", [1]), rule(2, "no-codenames", [2])]))
    ctx = chat(f"card {CARD}", "project FALCON launch")
    with pytest.raises(GuardrailBlocked) as err:
        await engine.check_input(ctx, None, RequestState())
    assert err.value.message == "blocked by guardrail rule 'no-codenames' (codenames: wordlist)"
    assert "falcon" not in err.value.message.lower() and CARD not in err.value.message
    assert err.value.status == 400
    assert {f["action"] for f in ctx.guardrails or []} == {"redact", "block"}


async def test_wordlist_whole_words_and_case() -> None:
    engine = GuardrailEngine(config([words(case_sensitive=True)], [rule(1, "w", [1 + 1])]))
    await engine.check_input(chat("falconry and FALCON are fine here"), None, RequestState())  # no raise
    with pytest.raises(GuardrailBlocked):
        await engine.check_input(chat("the blue bird flies"), None, RequestState())


async def test_cel_gate_on_headers_endpoint_and_scalar_memo() -> None:
    cfg = config(
        [words()],
        [
            rule(1, "tenant", [2], "'x-tenant' in request.headers && request.headers['x-tenant'] == 'acme'"),
            rule(2, "e", [2], "request.endpoint == 'embeddings'"),
        ],
    )
    engine = GuardrailEngine(cfg)
    with pytest.raises(GuardrailBlocked, match="'tenant'"):
        await engine.check_input(chat("falcon"), None, RequestState())
    other = chat("falcon")
    other.headers = {"X-Tenant": "other"}  # type: ignore[assignment]
    await engine.check_input(other, None, RequestState())  # neither gate is true
    embed = RequestContext("r2", "embeddings")
    embed.body = {"model": "m", "input": ["a falcon"]}
    for _ in range(2):  # the second verdict comes from the memo
        with pytest.raises(GuardrailBlocked, match="'e'"):
            await engine.check_input(embed, None, RequestState())
    assert any(key[0] == 2 for key in engine._memo)


async def test_credentials_headers_are_invisible_to_cel() -> None:
    cfg = config([words()], [rule(1, "auth", [2], "'authorization' in request.headers")])
    await GuardrailEngine(cfg).check_input(chat("falcon"), None, RequestState())  # gate false: no block


async def test_rule_reading_findings_applies_only_when_true() -> None:
    cel = "findings.exists(f, f.type == 'regex:card' && f.count >= 2)"
    engine = GuardrailEngine(config([cards(action="block")], [rule(1, "two-cards", [1], cel)]))
    await engine.check_input(chat(f"one card {CARD}"), None, RequestState())  # one finding: not applied
    with pytest.raises(GuardrailBlocked, match="two-cards"):
        await engine.check_input(chat(f"{CARD} and {CARD}"), None, RequestState())


async def test_cel_runtime_error_means_not_applied_and_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    engine = GuardrailEngine(
        config(
            [words()],
            [rule(1, "missing-header", [2], "request.model_requested == '' || request.headers['x-missing'] == 'y'")],
        )
    )
    await engine.check_input(chat("falcon"), None, RequestState())
    assert engine.cel_errors == 1
    assert "missing-header" in caplog.text and "falcon" not in caplog.text


async def test_sampling_zero_never_runs_and_apply_to_input_skips_output() -> None:
    engine = GuardrailEngine(config([words()], [rule(1, "never", [2], sampling_rate=0)]))
    await engine.check_input(chat("falcon"), None, RequestState())
    engine = GuardrailEngine(config([words()], [rule(1, "in", [2], apply_to="input")]))
    assert engine.output_guard(chat("x"), None) is None
    assert GuardrailEngine(config([words()], [rule(1, "out", [2], apply_to="output")])).output_guard(chat("x"), None)


async def test_completion_prompt_and_embedding_inputs_are_checked() -> None:
    engine = GuardrailEngine(config([cards()], [rule(1, "mask", [1])]))
    ctx = RequestContext("r", "completions")
    ctx.body = {"model": "m", "prompt": f"card {CARD}"}
    await engine.check_input(ctx, None, RequestState())
    assert ctx.body["prompt"] == "card [REDACTED:regex:card]"
    ctx = RequestContext("r", "embeddings")
    ctx.body = {"model": "m", "input": ["fine", f"card {CARD}"]}
    await engine.check_input(ctx, None, RequestState())
    assert ctx.body["input"] == ["fine", "card [REDACTED:regex:card]"]


def test_regex_config_errors_carry_paths() -> None:
    bad = provider(1, "regex", "p", "block", patterns=[{"pattern": "ok"}, {"pattern": "(unclosed"}])
    with pytest.raises(ConfigError) as err:
        config([bad], [])
    assert err.value.path == "guardrails_config.guardrail_providers[0].config.patterns[1].pattern"
    with pytest.raises(ConfigError) as err:
        config([provider(1, "regex", "p", "block", patterns=[{"pattern": "x", "flags": "q"}])], [])
    assert err.value.path.endswith("patterns[0].flags")
    with pytest.raises(ConfigError) as err:
        config([provider(1, "wordlist", "p", "block", words=["ok", ""])], [])
    assert err.value.path.endswith("config.words[1]")


async def test_regex_bounded_windows_still_find_matches_far_into_a_long_text() -> None:
    engine = GuardrailEngine(config([cards()], [rule(1, "mask", [1])]))
    text = "x " * 20_000 + CARD + " y" * 10
    ctx = chat(text)
    await engine.check_input(ctx, None, RequestState())
    assert ctx.body["messages"][0]["content"].count("[REDACTED:regex:card]") == 1


async def test_output_whole_answer_redacts_and_drops_raw() -> None:
    from runtime.providers.base import ParsedResponse

    engine = GuardrailEngine(config([cards()], [rule(1, "mask", [1])]))
    ctx = chat("hi")
    guard = engine.output_guard(ctx, None)
    data = {"choices": [{"index": 0, "message": {"role": "assistant", "content": f"card {CARD}"}}]}
    result = await guard.check_response(ctx, ParsedResponse(data, None, raw=b"{...}"))
    assert result.raw is None
    assert result.data["choices"][0]["message"]["content"] == "card [REDACTED:regex:card]"


async def test_tool_call_arguments_are_checked_both_ways_and_stay_json() -> None:
    """A card can travel in a tool call's arguments: the client's echo of an earlier call (input) and the
    model's new call (a whole answer). Masked inside the JSON text, which stays valid JSON."""
    from runtime.providers.base import ParsedResponse

    engine = GuardrailEngine(config([cards()], [rule(1, "mask", [1])]))
    ctx = chat("hi")

    def call() -> dict[str, Any]:
        return {"id": "c1", "type": "function", "function": {"name": "pay", "arguments": json.dumps({"card": CARD})}}

    ctx.body["messages"].append({"role": "assistant", "content": None, "tool_calls": [call()]})
    await engine.check_input(ctx, None, RequestState())
    sent = ctx.body["messages"][-1]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(sent) == {"card": "[REDACTED:regex:card]"}
    guard = engine.output_guard(ctx, None)
    data = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": [call()]},
            }
        ]
    }
    result = await guard.check_response(ctx, ParsedResponse(data, None, raw=b"{...}"))
    answered = result.data["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(answered) == {"card": "[REDACTED:regex:card]"} and result.raw is None


async def test_try_text_gives_spans_fired_and_the_masked_text() -> None:
    cfg = config(
        [cards(), words(action="flag")], [rule(1, "mask", [1]), rule(2, "w", [2], "request.model == 'gpt-4o'")]
    )
    text = f"pay {CARD} to falcon"
    out = await try_text(cfg, None, text, "input", {"model": "gpt-4o"})
    assert out["blocked"] is False and out["error"] is None
    assert out["text"] == "pay [REDACTED:regex:card] to falcon"
    spans = {(f["rule"], f["type"]): text[f["start"] : f["end"]] for f in out["findings"]}
    assert spans == {("mask", "regex:card"): CARD, ("w", "wordlist"): "falcon"}
    assert [f["action"] for f in out["fired"]] == ["redact", "flag"]
    out = await try_text(cfg, None, text, "input", {"model": "other"})
    assert [f["rule"] for f in out["fired"]] == ["mask"]
    blocked = await try_text(config([words()], [rule(1, "w", [2])]), None, "falcon", "output", {})
    assert blocked["blocked"] is True and blocked["text"] is None and blocked["error"]["type"] == "guardrail_blocked"


async def test_scrub_masks_flagged_values_in_body_raw_bytes_and_output() -> None:
    engine = GuardrailEngine(config([cards(action="flag")], [rule(1, "flag", [1])]))
    ctx = chat(f"card {CARD}")
    ctx.input_raw = json.dumps(ctx.body).encode()
    state = RequestState()
    await engine.check_input(ctx, None, state)
    assert ctx.body["messages"][0]["content"] == f"card {CARD}"  # flag: the provider sees it
    ctx.output = f"echo {CARD}"
    scrub(ctx, state.values)
    for where in (json.dumps(ctx.body), ctx.input_raw.decode(), ctx.output):
        assert CARD not in where and "[REDACTED]" in where
    ctx.input_raw = b'{"messages":[{"content":"card 4111\\u0020' + b'1111 1111 1111"}]}'  # not verbatim
    scrub(ctx, [CARD])
    assert CARD.encode() not in ctx.input_raw and b"4111\\u0020" not in ctx.input_raw


# -- remote providers: a real webhook on loopback --------------------------------------------------------


@pytest.fixture
async def hook() -> AsyncIterator[dict[str, Any]]:
    state: dict[str, Any] = {"delay": 0.0, "verdict": "allow", "calls": 0, "seen": [], "find": None}

    async def handle(request: web.Request) -> web.Response:
        state["calls"] += 1
        body = await request.json()
        state["seen"].append(body)
        await asyncio.sleep(state["delay"])
        answer: dict[str, Any] = {"verdict": state["verdict"], "reason": "policy"}
        if state["find"] is not None:  # a word to report as a span of the text the webhook received
            text = body["texts"][0]
            at = text.find(state["find"])
            answer["findings"] = [{"type": "word", "part": 0, "start": at, "end": at + len(state["find"])}]
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/v", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state["url"] = f"http://127.0.0.1:{port}/v"
    try:
        yield state
    finally:
        await runner.cleanup()


def webhook(pid: int, url: str, policy: str, timeout: float = 0.3, action: str = "block") -> dict[str, Any]:
    return {
        "id": pid,
        "provider_name": "webhook",
        "policy_name": f"hook-{policy}",
        "timeout": timeout,
        "config": {"url": url, "action": action, "failure_policy": policy},
    }


async def _closed(cfg: GuardrailsConfig) -> None:
    for p in cfg.providers.values():
        close = getattr(p.detector, "close", None)
        if close is not None:
            await close()


async def test_webhook_timeout_fail_open_records_and_goes_on(hook: dict[str, Any]) -> None:
    hook["delay"] = 2.0
    cfg = config([webhook(1, hook["url"], "fail_open")], [rule(1, "hook", [1])])
    try:
        ctx = chat("hello")
        await GuardrailEngine(cfg).check_input(ctx, None, RequestState())
        assert ctx.guardrails == [
            {
                "rule": "hook",
                "provider": "hook-fail_open",
                "stage": "input",
                "action": "flag",
                "types": [],
                "count": 0,
                "error": "timeout",
            }
        ]
    finally:
        await _closed(cfg)


async def test_webhook_timeout_fail_closed_is_unavailable(hook: dict[str, Any]) -> None:
    hook["delay"] = 2.0
    cfg = config([webhook(1, hook["url"], "fail_closed")], [rule(1, "hook", [1], timeout=0.2)])
    try:
        with pytest.raises(GuardrailUnavailable, match="rule 'hook'") as err:
            await GuardrailEngine(cfg).check_input(chat("hello"), None, RequestState())
        assert err.value.status == 503
    finally:
        await _closed(cfg)


async def test_remote_providers_of_all_rules_run_concurrently(hook: dict[str, Any]) -> None:
    hook["delay"] = 0.5
    hook["verdict"] = "flag"
    providers = [webhook(i, hook["url"], "fail_closed", timeout=5, action="flag") for i in (1, 2, 3)]
    cfg = config(providers, [rule(i, f"r{i}", [i]) for i in (1, 2, 3)])
    try:
        ctx = chat("hello")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await GuardrailEngine(cfg).check_input(ctx, None, RequestState())
        assert hook["calls"] == 3
        assert [f["rule"] for f in ctx.guardrails or []] == ["r1", "r2", "r3"]
        # Behaviour, not timing precision: three sequential 0.5 s calls could not end before 1.5 s.
        assert loop.time() - started < 1.5
    finally:
        await _closed(cfg)


async def test_plugin_counts_cel_errors_in_metrics_and_scrubs_at_finish() -> None:
    from runtime.guardrails.plugin import GuardrailsPlugin
    from runtime.plugins.metrics import MetricsPlugin

    metrics = MetricsPlugin()
    cel = "request.model_requested == '' || request.headers['x-missing'] == 'y'"
    plugin = GuardrailsPlugin(
        config([cards(action="flag"), words()], [rule(1, "flag", [1]), rule(2, "bad", [2], cel, apply_to="input")]),
        metrics,
    )
    ctx = chat(f"card {CARD} falcon")
    ctx.input_raw = json.dumps(ctx.body).encode()
    await plugin.pre_hook(ctx)  # the broken rule does not apply: no block
    assert metrics.guardrail_errors == {("bad", "cel_error"): 1}
    assert CARD in ctx.body["messages"][0]["content"]  # flagged: sent as is
    plugin.on_finish(ctx)
    assert CARD not in json.dumps(ctx.body) and CARD.encode() not in ctx.input_raw
    await plugin.aclose()


async def test_a_plugin_swapped_mid_request_still_scrubs_at_finish() -> None:
    """A live edit replaces the plugin while a request runs: the new plugin's on_finish (the one the gateway
    calls then) scrubs what the old one's pre-hook found, since the state travels with the request."""
    from runtime.guardrails.plugin import GuardrailsPlugin

    first = GuardrailsPlugin(config([cards(action="flag")], [rule(1, "flag", [1])]))
    second = GuardrailsPlugin(config([words()], [rule(2, "words", [2])]))
    ctx = chat(f"card {CARD}")
    ctx.input_raw = json.dumps(ctx.body).encode()
    await first.pre_hook(ctx)
    assert CARD in ctx.body["messages"][0]["content"]
    second.on_finish(ctx)
    assert CARD not in json.dumps(ctx.body) and CARD.encode() not in ctx.input_raw
    await first.aclose()
    await second.aclose()


async def test_sampling_draws_once_per_request_for_both_stages() -> None:
    engine = GuardrailEngine(config([cards()], [rule(1, "half", [1], sampling_rate=50)]))
    draws = iter([0.2, 0.9])  # first request in the sample (20 < 50), second not
    engine.random = lambda: next(draws)
    for expected in (True, False):
        ctx, state = chat(f"card {CARD}"), RequestState()
        await engine.check_input(ctx, None, state)
        assert (CARD not in ctx.body["messages"][0]["content"]) is expected
        assert (engine.output_guard(ctx, None, state) is not None) is expected  # the same draw


@pytest.mark.parametrize("field", ["messages", "headers"])
async def test_a_lone_surrogate_cannot_switch_a_rule_off(field: str) -> None:
    """JSON lets a client send "\\ud800" (not text). The CEL binding refuses an activation holding one, and a
    rule whose expression fails does not apply: without the clean-up, one such character anywhere in the
    messages or headers turned a block rule off."""
    cel = (
        "request.messages.exists(m, m.role == 'user')"
        if field == "messages"
        else "'x-tenant' in request.headers && request.headers['x-tenant'] != ''"
    )
    engine = GuardrailEngine(config([words()], [rule(2, "no-codenames", [2], cel, apply_to="input")]))
    ctx = chat("system", "falcon \ud800")
    ctx.headers = {"X-Tenant": "acme \udc00"}  # type: ignore[assignment]
    with pytest.raises(GuardrailBlocked):
        await engine.check_input(ctx, None, RequestState())
    assert engine.cel_errors == 0


async def test_remote_providers_see_the_offline_redactions_and_their_spans_map_back(hook: dict[str, Any]) -> None:
    """A webhook (or a judge, a moderation provider) never receives what an offline redact rule masks; the
    spans it reports in the masked text land on the right characters of the original."""
    hook["verdict"], hook["find"] = "flag", "falcon"
    cfg = config(
        [cards(), webhook(2, hook["url"], "fail_closed", timeout=5, action="redact")], [rule(1, "all", [1, 2])]
    )
    try:
        ctx = chat(f"pay {CARD} then falcon lands")
        await GuardrailEngine(cfg).check_input(ctx, None, RequestState())
        assert CARD not in json.dumps(hook["seen"]) and "[REDACTED:regex:card]" in hook["seen"][0]["texts"][0]
        assert ctx.body["messages"][0]["content"] == "pay [REDACTED:regex:card] then [REDACTED:word] lands"
    finally:
        await _closed(cfg)


async def test_an_offline_block_needs_no_remote_call(hook: dict[str, Any]) -> None:
    cfg = config([words(), webhook(1, hook["url"], "fail_closed", timeout=5)], [rule(1, "all", [1, 2])])
    try:
        with pytest.raises(GuardrailBlocked):
            await GuardrailEngine(cfg).check_input(chat("falcon"), None, RequestState())
        assert hook["calls"] == 0
    finally:
        await _closed(cfg)


async def test_a_large_text_is_scanned_off_the_event_loop() -> None:
    """A megabyte of digits costs the pii detector about a second of validation: above OFFLOAD_CHARS the
    offline scans run in a worker thread, so the loop keeps serving other requests meanwhile."""
    import threading

    from runtime.guardrails import engine as engine_module

    cfg = config([cards()], [rule(1, "mask", [1])])
    seen: list[str] = []
    detector = cfg.providers[1].detector
    original = detector.scan

    def scan(subject: Any) -> Any:
        seen.append(threading.current_thread().name)
        return original(subject)

    object.__setattr__(detector, "scan", scan)
    engine = GuardrailEngine(cfg)
    await engine.check_input(chat("short " + CARD), None, RequestState())
    big = chat("x" * engine_module.OFFLOAD_CHARS + " " + CARD)
    await engine.check_input(big, None, RequestState())
    assert seen[0] == threading.main_thread().name and seen[1] != threading.main_thread().name
    assert big.body["messages"][0]["content"].endswith("[REDACTED:regex:card]")

"""Mid-stream recovery: a chat stream that breaks after bytes reached the client continues on the next target.

The relay (runtime/http/relay.py) hands a broken stream here when this request has a `Resume` (chat
streams with a target after the one serving, `client.stream_resume` on, no `x-bf-stream-resume: off`):

1. Targets that can continue a partial answer (ProviderSpec.prefill, or the provider's
   `supports_assistant_prefill`) get the original request plus the text already delivered as an
   assistant prefill, in their own dialect (PREFILL_STYLES). Their answer is the rest of it.
2. If none of them could (none configured, refused, down), every remaining target gets the original
   request; its answer is relayed from where the delivered text ends, provided it reproduces that text
   exactly. The part it repeats is held (never more than the delivered text) and compared as it comes:
   the first difference ends the stream with the ORIGINAL failure's error event.

Either way the client sees one stream: the relay keeps its encoder, so there is one `[DONE]` /
`message_stop`, and chunk ids stay the first stream's; the new stream's role chunk is dropped. Each break
is one attempt in `ctx.attempts` (after_first_byte, delivered_chars, its usage: reported, else estimated
and marked so), and the log row's usage and cost are the sums of what every attempt billed.

Bounded: MAX_RECOVERIES per stream, each within what is left of `client.request_deadline_in_seconds`.
Only text answers of one choice are continued (a tool call cannot be prefilled).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Sequence
from typing import Any

import ujson

from runtime.config.model import KeyConfig
from runtime.core.accumulate import RawAccumulator, StreamAccumulator
from runtime.core.context import RequestContext
from runtime.core.cost import book_for
from runtime.core.failover import RETURN, RunRules, action_for
from runtime.errors import (
    ClientStalled,
    GatewayError,
    GatewayShutdown,
    GuardrailBlocked,
    GuardrailUnavailable,
    InternalError,
)
from runtime.providers.base import CHAT, Usage

HEADER = "x-bf-stream-resume"
MAX_RECOVERIES = 2
# A longer delivered text is not resent as a prefill nor matched (memory and the next request's size).
MAX_PREFIX_CHARS = 200_000
MAX_RAW_BYTES = 8 * 1024 * 1024  # the fast path's forwarded bytes kept to find that text
# How a provider continues an assistant message, by ProviderSpec.prefill value.
TRAILING_ASSISTANT = "trailing_assistant"  # Anthropic: the last assistant turn is continued
PREFIX = "prefix"  # Mistral: `"prefix": true` on that message
CONTINUE_FINAL = "continue_final_message"  # vLLM / SGLang: continue_final_message, add_generation_prompt off
PREFILL_STYLES = (TRAILING_ASSISTANT, PREFIX, CONTINUE_FINAL)
# A guardrail's stop is the answer, not a break: another target must not say it again.
_NOT_RECOVERABLE = (ClientStalled, GatewayShutdown, InternalError, GuardrailBlocked, GuardrailUnavailable)

Target = tuple[Any, str]  # (ProviderHandle, upstream model)


def plan(ctx: RequestContext, targets: Sequence[Target], engine: Any, rules: RunRules, config: Any) -> Resume | None:
    """The recovery plan of an opened chat stream, or None (off, or no target after the serving one)."""
    if ctx.endpoint != CHAT or not config.client.stream_resume:
        return None
    rest = list(targets[ctx.fallback_index + 1 :])
    if not rest or ctx.headers.get(HEADER, "").lower() in ("off", "false", "0"):
        return None
    return Resume(engine, rules, config.providers, targets[ctx.fallback_index], rest, ctx.fallback_index + 1)


def prefill_style(handle: Any) -> str | None:
    """How `handle`'s provider continues a partial answer; None: it cannot (or was configured not to)."""
    flag = handle.config.supports_assistant_prefill
    if flag is False:
        return None
    style: str | None = handle.spec.prefill
    if flag and style is None:  # declared by the user: OpenAI-compatible servers speak vLLM/SGLang's fields
        style = CONTINUE_FINAL if handle.adapter.kind == "openai" else TRAILING_ASSISTANT
    return style


def prefilled(body: dict[str, Any], style: str, text: str) -> tuple[dict[str, Any], int] | None:
    """`body` with `text` as the assistant's partial answer in `style`'s dialect, and how many trailing
    whitespace characters were left out of it (Anthropic refuses a prefill ending in whitespace); None when
    the request cannot carry one (it already ends with an assistant turn, or uses extended thinking)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if isinstance(last, dict) and last.get("role") == "assistant":
        return None
    trimmed = 0
    if style == TRAILING_ASSISTANT:
        if body.get("thinking"):
            return None  # Anthropic: prefill is not supported with extended thinking
        kept = text.rstrip()
        trimmed = len(text) - len(kept)
        text = kept
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if style == PREFIX:
        message["prefix"] = True
    out = dict(body)
    out["messages"] = [*messages, message]
    if style == CONTINUE_FINAL:
        out["continue_final_message"] = True
        out["add_generation_prompt"] = False
    return out, trimmed


def estimate_usage(body: dict[str, Any], delivered: str) -> Usage:
    """A broken stream's usage when the provider reported none: ~4 characters a token (marked estimated)."""
    prompt = 0
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            content = message.get("content")
            prompt += len(content) if isinstance(content, str) else len(ujson.dumps(content))
    return Usage(max(1, prompt // 4), max(1, len(delivered) // 4) if delivered else 0)


def broken_attempt(ctx: RequestContext, err: GatewayError, **extra: Any) -> dict[str, Any]:
    """The `attempts` entry of a stream that broke after bytes reached the client (with `extra` fields)."""
    entry = err.describe()
    entry.update(
        provider=ctx.provider,
        model=ctx.model,
        key=ctx.key_name,
        fallback_index=ctx.fallback_index,
        after_first_byte=True,
        **extra,
    )
    return entry


class Resume:
    """One stream's recovery state: what the client has been sent, what each broken attempt billed."""

    __slots__ = (
        "_acc",
        "_before",
        "_broken",
        "_ctx",
        "_current",
        "_engine",
        "_offset",
        "_providers",
        "_raw",
        "_raw_size",
        "_rules",
        "_saved",
        "_targets",
        "_trimmed",
        "billed",
        "done",
        "recorded",
        "recoveries",
        "rid",
    )

    def __init__(
        self, engine: Any, rules: RunRules, providers: Any, current: Target, targets: list[Target], offset: int
    ) -> None:
        self._engine = engine
        self._current = current  # the target serving the stream now
        self._rules = rules
        self._providers = providers
        self._targets = targets  # the targets after the serving one
        self._offset = offset  # the index of targets[0] in the request's own list
        self._acc = StreamAccumulator(None)
        self._raw: list[bytes] | None = None  # the fast path's forwarded bytes (see keep_raw)
        self._raw_size = 0
        self._before = ""  # text delivered by streams that already broke
        self._broken: Any = None  # the last stream that broke (its usage is already billed)
        self.billed: list[tuple[str, str, Usage]] = []  # (provider, model, usage) of each broken attempt
        self.recoveries = 0
        self.done = False
        self.recorded: GatewayError | None = None  # the failure already recorded as an attempt
        self.rid = ""
        self._trimmed = 0  # whitespace the last prefill left out (the continuation must not repeat it)
        self._ctx: RequestContext | None = None
        self._saved: tuple[str, str, str, int] = ("", "", "", 0)  # the broken attempt's target, for the log row

    # -- what the client received -------------------------------------------------------------------
    def observe(self, ctx: RequestContext, chunk: dict[str, Any]) -> None:
        """A chunk observer (runs before the chunk is written): folds the text the client gets."""
        if not self.rid:
            self.rid = str(chunk.get("id") or "")
        self._acc.add(chunk)

    def keep_raw(self, first: bytes) -> Callable[[bytes], None]:
        """The fast path's record of forwarded bytes (only made when recovery is possible). The bytes are
        only kept, not parsed: they are read if the stream breaks (an append per upstream read, ~0.1 us,
        where folding them as they pass cost ~2 us per event). Past MAX_RAW_BYTES nothing more is kept
        and the stream is no longer recoverable."""
        parts = self._raw = []
        for line in first.split(b"\n"):
            if line.startswith(b"data: {"):
                with contextlib.suppress(ValueError, AttributeError):
                    self.rid = str(ujson.loads(line[6:]).get("id") or "")
                break

        def keep(data: bytes) -> None:
            if self._raw_size <= MAX_RAW_BYTES:
                parts.append(data)
                self._raw_size += len(data)

        return keep

    def delivered(self) -> str | None:
        """The text the client has so far; None when it cannot be continued (tool calls, several choices)."""
        if self._raw is not None:
            if self._raw_size > MAX_RAW_BYTES:
                return None
            fold = RawAccumulator(None)
            fold.add(b"".join(self._raw))
            result = fold.result()
        else:
            result = self._acc.result()
        if len(result) > 1 or (result and result[0]["index"] != 0):
            return None
        if not result:
            return self._before
        message = result[0]["message"]
        if message.get("tool_calls"):
            return None
        return self._before + (message["content"] or "")

    # -- recovery -----------------------------------------------------------------------------------
    async def recover(self, ctx: RequestContext, stream: Any, err: GatewayError) -> Continued | None:
        """A stream that broke with `err`, continued on the next target that can; None: end with `err`."""
        if self.done or self.recoveries >= MAX_RECOVERIES or isinstance(err, _NOT_RECOVERABLE):
            return None
        text = self.delivered()
        if text is None or len(text) > MAX_PREFIX_CHARS:
            return None
        policy = self._current[0].config.failure_policy
        if action_for(err, policy) == RETURN:  # e.g. a content filter's refusal mid-stream is the answer
            return None
        rules = self._rules
        if rules.deadline_s is not None:
            left = rules.deadline_s - (time.perf_counter_ns() - ctx.start_ns) / 1e9
            if left <= 0:
                return None
            rules = copy.copy(rules)
            rules.deadline_s = left
        self.recoveries += 1
        self._record_break(ctx, stream, err, text)
        self._ctx = ctx
        saved = self._saved = (ctx.provider, ctx.model, ctx.key_name, ctx.fallback_index)
        body = ctx.body
        try:
            # 1. a target that continues the text itself (no prefill needed when nothing was said yet)
            able = [t for t in self._targets if not text or _can_prefill(t[0], body, text)]
            if able:
                try:
                    inner = await self._open(ctx, rules, able, text, prefill=bool(text))
                    return Continued(inner, self.rid, "", self._trimmed)
                except GatewayError:
                    pass
            # 2. any target, answering again: relayed from where the delivered text ends, if it repeats it
            if text:
                try:
                    inner = await self._open(ctx, rules, self._targets, text, prefill=False)
                    return Continued(inner, self.rid, text, 0, self)
                except GatewayError:
                    pass
        finally:
            ctx.body = body
        ctx.provider, ctx.model, ctx.key_name, ctx.fallback_index = saved
        return None

    async def _open(self, ctx: RequestContext, rules: RunRules, targets: list[Target], text: str, prefill: bool) -> Any:
        engine = self._engine
        original = ctx.body
        trimmed: dict[int, int] = {}

        async def once(ctx: RequestContext, handle: Any, model: str, exclude: Sequence[KeyConfig]) -> Any:
            ctx.body = original
            if prefill:
                style = prefill_style(handle)
                made = prefilled(original, style, text) if style is not None else None
                if made is None:
                    raise _NoPrefill(f"provider '{handle.name}' cannot continue this request")
                ctx.body, trimmed[id(handle)] = made
            try:
                return await engine._open_stream_once(ctx, handle, model, exclude)
            finally:
                ctx.body = original

        before = len(ctx.attempts)
        try:
            stream = await engine._run(ctx, targets, once, rules)
        finally:
            self._fix_indexes(ctx, targets, before)
        served = self._served(targets, ctx)
        self._trimmed = trimmed.get(id(served[0]), 0) if served is not None else 0
        if served is not None:
            self._current = served
            position = self._targets.index(served)
            ctx.fallback_index = self._offset + position
            self._offset += position + 1
            self._targets = self._targets[position + 1 :]
        # The new stream's text is observed from here on: what came before is `_before`.
        self._before = text
        self._acc = StreamAccumulator(None)
        self._raw = None
        return stream

    def _served(self, targets: list[Target], ctx: RequestContext) -> Target | None:
        index = ctx.fallback_index
        return targets[index] if 0 <= index < len(targets) else None

    def _fix_indexes(self, ctx: RequestContext, targets: list[Target], before: int) -> None:
        """`Engine._run` numbers the targets it was given; the log numbers the request's own list."""
        for entry in ctx.attempts[before:]:
            index = entry.get("fallback_index")
            if isinstance(index, int) and 0 <= index < len(targets):
                entry["fallback_index"] = self._offset + self._targets.index(targets[index])
            entry["recovery"] = True

    def _record_break(self, ctx: RequestContext, stream: Any, err: GatewayError, text: str) -> None:
        usage = stream.usage
        estimated = usage is None
        if usage is None:
            usage = estimate_usage(ctx.body, text[len(self._before) :])
        entry = broken_attempt(
            ctx,
            err,
            delivered_chars=len(text) - len(self._before),
            usage={"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens},
        )
        if estimated:
            entry["usage_estimated"] = True
        ctx.attempts.append(entry)
        self.billed.append((ctx.provider, ctx.model, usage))
        self._broken = stream
        self.recorded = err

    def diverged(self, stream: Any) -> GatewayError:
        """The replayed answer differs from what the client has: it is listed as an attempt (billed: its
        usage if reported, else estimated), and the stream ends with the original failure, on its target."""
        self.done = True
        ctx = self._ctx
        assert self.recorded is not None and ctx is not None
        usage = stream.usage
        entry: dict[str, Any] = {
            "status": None,
            "type": "replay_diverged",
            "code": None,
            "message": "the answer given again differs from the text already delivered",
            "provider": ctx.provider,
            "model": ctx.model,
            "key": ctx.key_name,
            "fallback_index": ctx.fallback_index,
            "recovery": True,
        }
        if usage is None:
            usage = estimate_usage(ctx.body, "")
            entry["usage_estimated"] = True
        entry["usage"] = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
        ctx.attempts.append(entry)
        self.billed.append((ctx.provider, ctx.model, usage))
        self._broken = stream
        ctx.provider, ctx.model, ctx.key_name, ctx.fallback_index = self._saved
        return self.recorded

    # -- accounting ---------------------------------------------------------------------------------
    def settle(self, ctx: RequestContext, stream: Any, kind: str) -> None:
        """The log row's usage and cost: the sums over every billed attempt (broken ones and the last)."""
        parts = list(self.billed)
        if stream is not self._broken and stream.usage is not None:
            parts.append((ctx.provider, ctx.model, stream.usage))
        if not parts:
            return
        total = Usage(0, 0)
        cost: float | None = None
        book = book_for(self._providers)
        for provider, model, usage in parts:
            total.prompt_tokens += usage.prompt_tokens
            total.completion_tokens += usage.completion_tokens
            total.total_tokens += usage.total_tokens
            total.cached_tokens += usage.cached_tokens
            total.cache_write_tokens += usage.cache_write_tokens
            info = book.info(provider, model, kind)
            if info is not None and info.priced:
                cost = (cost or 0.0) + info.price(
                    usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.cache_write_tokens
                )
        ctx.usage = total
        if ctx.cost is None:
            ctx.cost = cost


def bill_break(
    ctx: RequestContext, entry: dict[str, Any], usage: Usage | None, folded: list[dict[str, Any]] | None
) -> None:
    """A stream that broke and was not continued: its attempt entry says what it delivered (when the log's
    fold of the text is kept) and billed; without reported usage, an estimate from that text (marked
    `usage_estimated`) becomes the row's usage, so the row is priced like any billed attempt."""
    text = None
    if folded and len(folded) == 1:
        text = folded[0]["message"].get("content") or ""
        entry["delivered_chars"] = len(text)
    if usage is None and text is not None:
        usage = ctx.usage = estimate_usage(ctx.body, text)
        entry["usage_estimated"] = True
    if usage is not None:
        entry["usage"] = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}


class _NoPrefill(GatewayError):
    """This target cannot take this request's prefill: the attempt loop moves on to the next one."""

    status = 400
    type = "invalid_request_error"
    code = "prefill_unsupported"


class Continued:
    """The next target's stream as the rest of the broken one. Chunks keep the first stream's id; the role
    chunk is dropped; whitespace the prefill left out is not repeated; in replay mode (`expect`), the part
    that repeats the delivered text is held and compared, and only what follows it is passed on."""

    __slots__ = ("_expect", "_inner", "_owner", "_pending", "_rid", "_skip_ws", "first")

    def __init__(self, inner: Any, rid: str, expect: str, skip_ws: int, owner: Resume | None = None) -> None:
        self._inner = inner
        self._rid = rid
        self._expect = expect
        self._skip_ws = skip_ws
        self._owner = owner
        self._pending: list[dict[str, Any]] | None = inner.first
        self.first: list[dict[str, Any]] = []  # checked in `next` (a divergence must end the stream)

    @property
    def usage(self) -> Usage | None:
        usage: Usage | None = self._inner.usage
        return usage

    @property
    def arrived_ns(self) -> int:
        arrived: int = self._inner.arrived_ns
        return arrived

    @property
    def skipped(self) -> int:
        return int(getattr(self._inner, "skipped", 0))

    async def next(self) -> list[dict[str, Any]] | None:
        while True:
            chunks = self._pending
            self._pending = None
            if chunks is None:
                chunks = await self._inner.next()
                if chunks is None:
                    if self._expect:  # ended before repeating everything the client has
                        raise self._diverged()
                    return None
            out = self._fix(chunks)
            if out:
                return out

    def _diverged(self) -> GatewayError:
        assert self._owner is not None
        return self._owner.diverged(self)

    def _fix(self, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for chunk in chunks:
            if self._rid:
                chunk["id"] = self._rid
            keep = chunk.get("usage") is not None
            for choice in chunk.get("choices") or ():
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    delta.pop("role", None)
                    content = delta.get("content")
                    if isinstance(content, str) and content:
                        content = self._trim(content)
                        delta["content"] = content
                    if self._expect and delta.get("tool_calls"):
                        raise self._diverged()
                    if delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content"):
                        keep = True
                    elif "content" in delta:
                        del delta["content"]
                if choice.get("finish_reason"):
                    if self._expect:
                        raise self._diverged()
                    keep = True
            if keep:
                out.append(chunk)
        return out

    def _trim(self, content: str) -> str:
        expect = self._expect
        if expect:
            n = min(len(content), len(expect))
            if content[:n] != expect[:n]:
                raise self._diverged()
            self._expect = expect[n:]
            content = content[n:]
        if self._skip_ws and content:
            n = 0
            while n < len(content) and n < self._skip_ws and content[n].isspace():
                n += 1
            self._skip_ws = 0  # only the first text may start with the whitespace the client already has
            content = content[n:]
        return content

    def interrupt(self, err: GatewayError) -> None:
        self._inner.interrupt(err)

    def close(self) -> None:
        self._inner.close()


def _can_prefill(handle: Any, body: dict[str, Any], text: str) -> bool:
    style = prefill_style(handle)
    return style is not None and prefilled(body, style, text) is not None

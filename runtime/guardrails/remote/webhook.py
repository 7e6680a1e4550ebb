"""The `webhook` guardrail: the operator's own HTTP service judges the text.

Config (`guardrail_providers[i].config`, besides the shared `action` / `failure_policy`):
  url              required; http:// or https://, taken literally. Private addresses are allowed: this is the
                   operator's own service, not a URL a client chose.
  headers          optional {name: value}; a value may be `env.NAME`, read once when the config is built.
                   Values are never shown in errors (nor, by the admin API, back to anyone).
  include_request  optional bool (false): also send the request's model, provider, virtual key and team ids.

Request:  POST url  {"stage": "input"|"output", "texts": [...], "request": {...}}
          (`request` is {} unless include_request; headers are never forwarded)
Answer:   {"verdict": "allow"|"block"|"flag", "findings": [{"type", "part", "start", "end", "score"?}],
           "reason"?: str}
          A "block" / "flag" verdict with no findings counts as one whole-part finding on every text,
          typed `webhook:<reason or verdict>`. "allow" returns nothing (its findings are ignored).
          What is done with findings is the provider's configured `action`.

Bounded by the provider's timeout (aiohttp ClientTimeout total, plus an outer bound) and MAX_RESPONSE
bytes. A non-2xx answer, a body that is not the JSON above, an oversized body, a refused connection or a
timeout is a DetectorError ("webhook guardrail_providers[0]: status 500"); the failure policy decides.

The detector owns one aiohttp ClientSession, made lazily in the running loop on first use (a config is
built before the loop runs, and again in each worker) and closed by `await detector.close()`, which the
guardrails plugin calls when it is closed or replaced.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from runtime.config.load import ConfigError, MissingEnv, is_env_ref
from runtime.guardrails.detectors.base import check_fields
from runtime.guardrails.remote import label_of, token
from runtime.guardrails.types import DetectorError, Finding, Subject

FIELDS = ("url", "headers", "include_request")
MAX_RESPONSE = 256 * 1024  # bytes of a verdict; a verdict is small, anything larger is a broken service
VERDICTS = ("allow", "block", "flag")
# The request fields a webhook may be told (ids only: never headers, never message text twice).
REQUEST_IDS = ("model", "provider", "virtual_key", "team")


class WebhookDetector:
    kind = "webhook"
    remote = True
    streamable = False

    def __init__(
        self, url: str, headers: Mapping[str, str], include_request: bool, timeout_s: float, label: str
    ) -> None:
        self.url = url
        self._headers = {"Content-Type": "application/json", **headers}
        self.include_request = include_request
        self.timeout_s = timeout_s
        self.label = label
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never the URL or a header value
        return f"<WebhookDetector {self.label}>"

    def scan(self, subject: Subject) -> list[Finding]:
        raise DetectorError(f"webhook {self.label}: remote detector, use check()")

    def _error(self, cause: str) -> DetectorError:
        return DetectorError(f"webhook {self.label}: {cause}")

    def _session_now(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            # Made in the running loop, on first use. No cookies kept between verdicts.
            session = self._session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(), connector=aiohttp.TCPConnector(limit=64)
            )
        return session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def payload(self, subject: Subject) -> dict[str, Any]:
        request: dict[str, Any] = {}
        if self.include_request:
            request = {k: subject.request.get(k, "") for k in REQUEST_IDS}
        return {"stage": subject.stage, "texts": list(subject.texts), "request": request}

    async def check(self, subject: Subject, gateway: Any = None) -> list[Finding]:
        body = json.dumps(self.payload(subject), ensure_ascii=False).encode()
        try:
            async with asyncio.timeout(self.timeout_s):
                raw = await self._post(body)
        except TimeoutError:
            raise self._error("timeout") from None
        except aiohttp.ClientError as exc:
            raise self._error(f"unreachable ({type(exc).__name__})") from None
        except DetectorError:
            raise
        except (OSError, ValueError) as exc:  # a refused socket; a URL or header aiohttp will not send
            raise self._error(f"unreachable ({type(exc).__name__})") from None
        return self.parse(raw, subject)

    async def _post(self, body: bytes) -> bytes:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with self._session_now().post(
            self.url, data=body, headers=self._headers, timeout=timeout, allow_redirects=False
        ) as response:
            if not 200 <= response.status < 300:
                raise self._error(f"status {response.status}")
            if response.content_length is not None and response.content_length > MAX_RESPONSE:
                raise self._error("response too large")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(16 * 1024):
                size += len(chunk)
                if size > MAX_RESPONSE:
                    raise self._error("response too large")
                chunks.append(chunk)
            return b"".join(chunks)

    def parse(self, raw: bytes, subject: Subject) -> list[Finding]:
        """The service's verdict as findings; a malformed answer is a DetectorError (never echoed)."""
        try:
            answer = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise self._error("bad JSON") from None
        if not isinstance(answer, dict):
            raise self._error("bad answer (not an object)")
        verdict = answer.get("verdict")
        if verdict not in VERDICTS:
            raise self._error("bad answer (verdict must be allow, block or flag)")
        if verdict == "allow":
            return []
        listed = answer.get("findings", [])
        if listed is None:
            listed = []
        if not isinstance(listed, list):
            raise self._error("bad answer (findings must be a list)")
        findings = [self._finding(item, i, subject) for i, item in enumerate(listed)]
        if findings:
            return findings
        reason = answer.get("reason")
        kind = "webhook:" + token(reason if isinstance(reason, str) and reason.strip() else verdict)
        return [Finding(kind, part=i) for i in range(len(subject.texts))] or [Finding(kind)]

    def _finding(self, item: Any, i: int, subject: Subject) -> Finding:
        bad = self._error(f"bad answer (findings[{i}])")
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise bad
        part = item.get("part", 0)
        start = item.get("start", 0)
        end = item.get("end", -1)
        score = item.get("score")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (part, start, end)):
            raise bad
        if not 0 <= part < max(1, len(subject.texts)):
            raise bad
        if end != -1:
            size = len(subject.texts[part]) if subject.texts else 0
            if not 0 <= start < end <= size:
                raise bad
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
            raise bad
        return Finding(
            token(item["type"]), part, start if end != -1 else 0, end, None if score is None else float(score)
        )


def build(
    config: Mapping[str, Any], path: str, warnings: list[str], timeout_s: float, policy: str = ""
) -> WebhookDetector:
    check_fields(config, path, FIELDS, "webhook")
    url = config.get("url")
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{path}.url", "is required: the http(s) URL of your guardrail service")
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        valid = False
    if not valid:
        # The URL itself is not echoed: it may carry credentials (user:password@host).
        raise ConfigError(f"{path}.url", "must be an http:// or https:// URL with a host")
    headers_in = config.get("headers", {})
    if not isinstance(headers_in, dict):
        raise ConfigError(f"{path}.headers", "must be an object of header names to values")
    headers: dict[str, str] = {}
    for name, value in headers_in.items():
        where = f"{path}.headers.{name}"
        if not isinstance(value, str):
            raise ConfigError(where, "must be a string (or env.NAME)")
        if is_env_ref(value):
            variable = value[4:]
            if variable not in os.environ:
                raise MissingEnv(where, variable)
            value = os.environ[variable]
        if any(c in value for c in "\r\n") or any(c in name for c in "\r\n:"):
            raise ConfigError(where, "must not contain line breaks (value hidden)")
        headers[name] = value
    if (parts.username or parts.password) and any(name.lower() == "authorization" for name in headers):
        # aiohttp cannot send both (it refuses at request time): a config that could never work is an error.
        raise ConfigError(f"{path}.headers", "has an Authorization header and the url has credentials: give one")
    include = config.get("include_request", False)
    if not isinstance(include, bool):
        raise ConfigError(f"{path}.include_request", f"must be true or false, got {type(include).__name__}")
    return WebhookDetector(url, headers, include, timeout_s, policy or label_of(path))

"""AWS Signature Version 4 for one request, with hmac and hashlib only (no boto3 on the hot path).

    canonical request = METHOD \\n canonical URI \\n canonical query \\n canonical headers \\n
                        signed header names \\n hex(sha256(body))
    string to sign    = AWS4-HMAC-SHA256 \\n amz-date \\n date/region/service/aws4_request \\n
                        hex(sha256(canonical request))
    signing key       = HMAC chain over "AWS4" + secret, date, region, service, "aws4_request"

For every service but S3 the path is URI-encoded once more for the canonical URI, so a Bedrock model id
sent as `anthropic.claude-v2%3A1` is signed as `anthropic.claude-v2%253A1` (what botocore does).
`sign` is pure: the caller passes the time.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone
from urllib.parse import parse_qsl, quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(f"AWS4{secret_key}".encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def host_header(url: str) -> str:
    """The Host value an HTTP client sends for `url` (port only when not the scheme's default)."""
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    host = parts.hostname or ""
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def canonical_query(query: str) -> str:
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_request(method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[str, str]:
    """(canonical request, signed header names); `headers` must include every header to sign, host too."""
    parts = urlsplit(url)
    uri = quote(parts.path or "/", safe="/-_.~")
    lowered = {k.lower().strip(): " ".join(str(v).split()) for k, v in headers.items()}
    names = sorted(lowered)
    canonical_headers = "".join(f"{name}:{lowered[name]}\n" for name in names)
    signed = ";".join(names)
    payload = hashlib.sha256(body).hexdigest()
    return "\n".join((method.upper(), uri, canonical_query(parts.query), canonical_headers, signed, payload)), signed


def sign(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    service: str,
    now: datetime,
    session_token: str | None = None,
) -> dict[str, str]:
    """The headers to add to the request: X-Amz-Date, X-Amz-Security-Token (if any) and Authorization.

    `headers` are the request's own headers that should be signed (e.g. Content-Type); Host is added here.
    """
    amz_date = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    added = {"X-Amz-Date": amz_date}
    if session_token:
        added["X-Amz-Security-Token"] = session_token
    to_sign = {**headers, **added, "host": host_header(url)}
    request, signed = canonical_request(method, url, to_sign, body)
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join((ALGORITHM, amz_date, scope, hashlib.sha256(request.encode()).hexdigest()))
    signature = hmac.new(
        signing_key(secret_key, date, region, service), string_to_sign.encode(), hashlib.sha256
    ).hexdigest()
    added["Authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    return added

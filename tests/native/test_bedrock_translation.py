"""Pure tests for the Bedrock pieces: SigV4 against botocore's signer, the event-stream codec against
botocore's decoder and its CRC checks, and Converse translation from documented shapes."""

from __future__ import annotations

import json
import struct
from datetime import datetime, timezone
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer
from fakes.native.bedrock_fake import event, exception_frame, frame

from runtime.codecs.eventstream import EventStreamDecoder, encode_message
from runtime.errors import ProviderError, UpstreamGarbage
from runtime.providers import bedrock_wire, sigv4
from runtime.providers.bedrock import BedrockAdapter
from runtime.providers.bedrock_stream import ConverseStream

NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEXAMPLE"])
@pytest.mark.parametrize(
    "url",
    [
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
        "http://127.0.0.1:8123/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Aapplication-inference-profile%2Fabc/invoke",
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/x/converse?b=2&a=1%202",
    ],
)
def test_sigv4_matches_botocore(url: str, token: str | None) -> None:
    body = b'{"messages": []}'
    ours = sigv4.sign(
        "POST",
        url,
        {"Content-Type": "application/json"},
        body,
        access_key="AKIDEXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        service="bedrock",
        now=NOW,
        session_token=token,
    )
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    request.context["timestamp"] = NOW.strftime("%Y%m%dT%H%M%SZ")
    request.headers["X-Amz-Date"] = request.context["timestamp"]
    if token:
        request.headers["X-Amz-Security-Token"] = token
    signer = SigV4Auth(
        Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token), "bedrock", "us-east-1"
    )
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    assert ours["Authorization"].endswith(f"Signature={expected}")
    assert ours["X-Amz-Date"] == "20250304T050607Z"
    assert ("X-Amz-Security-Token" in ours) == bool(token)


def test_eventstream_codec_agrees_with_botocore() -> None:
    frames = event("messageStart", {"role": "assistant"}) + encode_message(
        {":event-type": "contentBlockDelta", ":message-type": "event"}, b'{"delta":{"text":"hi"}}'
    )
    decoded = list(_botocore(frames))
    assert [(m.headers[":event-type"], json.loads(m.payload)) for m in decoded] == [
        ("messageStart", {"role": "assistant", "p": "abcdefgh"}),
        ("contentBlockDelta", {"delta": {"text": "hi"}}),
    ]
    ours = EventStreamDecoder()
    messages = [m for i in range(len(frames)) for m in ours.feed(frames[i : i + 1])]  # a byte at a time
    assert [m.headers[":event-type"] for m in messages] == ["messageStart", "contentBlockDelta"]
    assert not ours.pending


def _botocore(data: bytes) -> Any:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return buffer


@pytest.mark.parametrize("where", [5, 20, -2])
def test_eventstream_rejects_corruption(where: int) -> None:
    data = bytearray(frame({":event-type": "x"}, b"{}"))
    data[where] ^= 0xFF
    with pytest.raises(UpstreamGarbage, match=r"CRC|size"):
        EventStreamDecoder().feed(bytes(data))


def test_eventstream_typed_headers() -> None:
    head = b"\x04flag\x00" + b"\x03num\x04" + struct.pack(">i", -7) + b"\x03str\x07\x00\x02ok"
    total = 16 + len(head)
    import zlib

    prelude = struct.pack(">II", total, len(head))
    body = prelude + struct.pack(">I", zlib.crc32(prelude)) + head
    (message,) = EventStreamDecoder().feed(body + struct.pack(">I", zlib.crc32(body)))
    assert message.headers == {"flag": True, "num": -7, "str": "ok"}


def test_converse_stream_translation() -> None:
    usage = {"inputTokens": 5, "outputTokens": 4, "totalTokens": 9}
    data = b"".join(
        [
            event("messageStart", {"role": "assistant"}),
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
            event("contentBlockStop", {"contentBlockIndex": 0}),
            event(
                "contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}
            ),
            event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"a":'}}}),
            event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "1}"}}}),
            event("messageStop", {"stopReason": "tool_use"}),
            event("metadata", {"usage": usage, "metrics": {"latencyMs": 1}}),
        ]
    )
    stream = ConverseStream("m", 1, "id1")
    chunks = stream.feed(data)
    assert stream.finished
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[1] == {"content": "Hi"}
    assert deltas[2]["tool_calls"][0]["id"] == "t1"
    assert "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas[2:5]) == '{"a":1}'
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


def test_exception_frame_is_a_mapped_error() -> None:
    with pytest.raises(ProviderError) as info:
        ConverseStream("m", 1, "id").feed(exception_frame("throttlingException", "slow down"))
    assert (info.value.status, info.value.type, info.value.retryable) == (429, "rate_limit_error", True)


def test_converse_response_with_cache_usage() -> None:
    raw = json.dumps(
        {
            "output": {
                "message": {
                    "role": "assistant",
                    "content": [
                        {"text": "Checking."},
                        {"toolUse": {"toolUseId": "tooluse_1", "name": "top_song", "input": {"sign": "WZPZ"}}},
                    ],
                }
            },
            "stopReason": "tool_use",
            "usage": {
                "inputTokens": 10,
                "outputTokens": 20,
                "totalTokens": 130,
                "cacheReadInputTokens": 100,
                "cacheWriteInputTokens": 0,
            },
            "metrics": {"latencyMs": 500},
        }
    ).encode()
    answer, usage = bedrock_wire.parse_converse(raw, "m", 1, "r")
    message = answer["choices"][0]["message"]
    assert message["content"] == "Checking."
    assert message["tool_calls"][0]["function"] == {"name": "top_song", "arguments": '{"sign":"WZPZ"}'}
    assert answer["usage"] == {
        "prompt_tokens": 110,
        "completion_tokens": 20,
        "total_tokens": 130,
        "prompt_tokens_details": {"cached_tokens": 100},
    }
    assert usage is not None


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [
        ("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/", 429, (429, "rate_limit_error")),
        ("UnrecognizedClientException", 403, (401, "authentication_error")),
        ("ModelTimeoutException", 408, (504, "timeout")),
        ("ServiceUnavailableException", 503, (503, "api_error")),
    ],
)
def test_error_mapping(kind: str, status: int, expected: tuple[int, str]) -> None:
    err = BedrockAdapter().parse_error(status, {"x-amzn-errortype": kind}, b'{"message": "m"}')
    assert (err.status, err.type) == expected

"""What the property-based fuzz suites share: a fixed hypothesis budget, header values a client can
really send, JSON values of any shape, and one raw HTTP request to a gateway."""

from __future__ import annotations

import http.client
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from .process import Gateway

EXAMPLES = max(20, int(os.environ.get("BIFROST_FUZZ_EXAMPLES", "800")) // 5)
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

# Header values a client can actually send: latin-1 text without CR/LF (http.client refuses those).
header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=200
).map(str.strip)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=5),
    max_leaves=20,
)


def raw_request(gw: Gateway, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()

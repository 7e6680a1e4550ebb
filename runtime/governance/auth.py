"""Which virtual key a request presents, and which configured key that is.

Read as Go Bifrost reads them (plugins/governance/utils.go), in order: `x-bf-vk`, `Authorization:
Bearer`, `x-api-key`, `x-goog-api-key`, so the official openai, anthropic and google-genai SDKs work
with a virtual key as their API key (google-genai sends it as `x-goog-api-key`, never as a `key=`
query parameter). In the three SDK headers only values starting with `sk-bf-` count: any other value
there is a client's own provider key, not ours to judge, and the request is keyless. `x-bf-vk` exists
only for virtual keys, so whatever it holds is looked up (an unknown value there is refused, not
ignored).

Keys are held by the SHA-256 digest of their value: a look-up hashes the presented value and finds it
in a dict, O(1), and no plaintext is kept. The dict compares digests, so timing reveals nothing about
the value (finding a value from its digest's prefix is preimage-hard).
"""

from __future__ import annotations

from collections.abc import Mapping

from runtime.governance.entities import VK_PREFIX

_N = len(VK_PREFIX)
_SDK_HEADERS = ("x-api-key", "x-goog-api-key")


def _is_vk(value: str) -> bool:
    return value[:_N].lower() == VK_PREFIX


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The virtual key the request carries, or None when it carries none (see the module doc)."""
    value = headers.get("x-bf-vk")
    if value:
        return value.strip()
    auth = headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        token = auth[7:].strip()
        if _is_vk(token):
            return token
    for name in _SDK_HEADERS:
        value = headers.get(name)
        if value and _is_vk(value.strip()):
            return value.strip()
    return None

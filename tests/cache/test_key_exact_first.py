"""The direct lookup's key comes first (issue 16, the full stack's cost): a hit needs only the exact hash,
so the params hash and the prompt text are built after a miss, and they are the same as before."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.cache import plugin as plugin_module
from runtime.cache.key import exact_hash, request_key
from tests.cache.test_plugin_units import PROVIDERS, Clock, _ctx, _miss, _plugin

BODIES: list[dict[str, Any]] = [
    {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
    {
        "model": "anthropic/claude",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "temperature": 0.2,
        "stream": True,
        "user": "u1",
    },
    {"model": "gpt-4o", "prompt": "Once upon", "max_tokens": 5},
]


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("exclude_system", [False, True])
@pytest.mark.parametrize("flags", [(True, True), (False, True), (True, False)])
def test_exact_hash_is_the_request_keys_hash(
    body: dict[str, Any], exclude_system: bool, flags: tuple[bool, bool]
) -> None:
    kw: dict[str, Any] = {
        "namespace": ("vk-1", "k"),
        "providers": PROVIDERS | {"openai"},
        "by_model": flags[0],
        "by_provider": flags[1],
        "exclude_system": exclude_system,
    }
    for endpoint in ("chat", "completions"):
        whole = request_key(endpoint, body, **kw)
        exact = exact_hash(endpoint, body, **kw)
        assert exact == whole.request_hash
        # Given the hash, request_key builds the same key around it.
        assert request_key(endpoint, body, request_hash=exact, **kw) == whole


async def test_a_hit_builds_only_the_exact_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    plugin = _plugin(clock)
    await _miss(plugin, _ctx("a"))
    stored = next(iter(plugin.store._by_hash.values()))  # type: ignore[attr-defined]
    whole = request_key(
        "chat", _ctx("x").body, namespace=(None, "k"), providers=PROVIDERS, by_model=True, by_provider=True,
        exclude_system=False,
    )  # fmt: skip
    # The miss stored the whole key: the same hashes and prompt text as request_key gives.
    assert (stored.request_hash, stored.params_hash, stored.prompt_text) == (
        whole.request_hash,
        whole.params_hash,
        whole.prompt_text,
    )

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a direct hit must not build the whole key")

    monkeypatch.setattr(plugin_module, "request_key", refuse)
    hit = _ctx("b")
    assert await plugin.pre_hook(hit) is not None and hit.cache == "hit-direct"
    # A miss still builds it (and fails here, proving it is the miss path that does).
    other = _ctx("c")
    other.body["messages"][0]["content"] = "Hello?"
    with pytest.raises(AssertionError, match="whole key"):
        await plugin.pre_hook(other)

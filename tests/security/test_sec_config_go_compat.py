"""Issue 9 item 18: Go Bifrost configs that used to fail here start as they do in Go.

`"models": ["*"]` means every model (key and provider level); `weight: 0` is allowed (such a key gets
traffic only when no key with a positive weight may serve the model, as in Go's weighted selection);
the provider name `sgl` (Go's name for SGLang) is known; an unset `env.NAME` in a key skips that key
with a warning naming the variable, and a provider left without keys answers each request with an
error naming it.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeOpenAI
from harness import StartGateway, make_config, openai_provider

from runtime.config.load import load_gateway_config
from runtime.config.model import KeyConfig
from runtime.core.keys import KeySelector
from runtime.core.router import Router
from runtime.errors import GatewayError


def load(tmp_path: Path, providers: dict[str, Any], environ: dict[str, str] | None = None) -> Any:
    (tmp_path / "config.json").write_text(json.dumps({"providers": providers}))
    return load_gateway_config(tmp_path, environ=environ or {})


def openai(*keys: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"keys": list(keys), "network_config": {"base_url": "http://127.0.0.1:9"}, **extra}


def test_star_models_on_a_key_means_every_model(tmp_path: Path) -> None:
    cfg = load(tmp_path, {"openai": openai({"name": "k", "value": "sk", "models": ["*"], "weight": 1})})
    router = Router.build(cfg.providers, cfg.client)
    handle, model = router.resolve("openai/gpt-4o-mini")
    assert (handle.name, model) == ("openai", "gpt-4o-mini")
    assert handle.keys.select("any-model-at-all") is not None
    assert "*" not in handle.listed_models  # never advertised as a model named "*"


def test_star_models_on_a_provider_means_every_model(tmp_path: Path) -> None:
    cfg = load(tmp_path, {"openai": openai({"name": "k", "value": "sk", "weight": 1}, models=["*"])})
    _handle, model = Router.build(cfg.providers, cfg.client).resolve("openai/o3-mini")
    assert model == "o3-mini"


def test_star_in_a_hand_built_key_is_honoured() -> None:
    assert KeyConfig("k", "v", models=("*",)).allows("gpt-4o")


def test_weight_zero_is_accepted_with_a_warning(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        {
            "openai": openai(
                {"name": "main", "value": "a", "weight": 1},
                {"name": "standby", "value": "b", "weight": 0},
            )
        },
    )
    assert [k.weight for k in cfg.providers["openai"].keys] == [1.0, 0.0]
    assert any("keys[1].weight is 0" in w for w in cfg.warnings), cfg.warnings


def test_weight_zero_key_gets_no_traffic_beside_a_positive_one() -> None:
    main, standby = KeyConfig("main", "a", weight=1.0), KeyConfig("standby", "b", weight=0.0)
    selector = KeySelector((standby, main), rng=random.Random(7))
    picks = Counter(selector.select("m").name for _ in range(2000))  # type: ignore[union-attr]
    assert picks == {"main": 2000}
    # A retry that excludes the failed positive key may still use the zero-weight one (failover).
    assert selector.select("m", exclude=(main,)) is standby


def test_all_zero_weights_share_the_traffic() -> None:
    keys = (KeyConfig("a", "a", weight=0.0), KeyConfig("b", "b", weight=0.0), KeyConfig("c", "c", weight=0.0))
    selector = KeySelector(keys, rng=random.Random(3))
    picks = Counter(selector.select("m").name for _ in range(3000))  # type: ignore[union-attr]
    assert set(picks) == {"a", "b", "c"}
    assert min(picks.values()) > 500


def test_sgl_is_known(tmp_path: Path) -> None:
    cfg = load(tmp_path, {"sgl": {"keys": [], "network_config": {"base_url": "http://127.0.0.1:30000"}}})
    assert cfg.providers["sgl"].kind == "openai"
    assert cfg.warnings == ()


def test_unset_env_skips_only_that_key(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        {
            "openai": openai(
                {"name": "set", "value": "env.SET_KEY", "weight": 1},
                {"name": "unset", "value": "env.UNSET_KEY", "weight": 1},
            )
        },
        {"SET_KEY": "sk-fake"},
    )
    assert [k.name for k in cfg.providers["openai"].keys] == ["set"]
    assert cfg.providers["openai"].missing_env == ()
    warning = [w for w in cfg.warnings if "UNSET_KEY" in w]
    assert len(warning) == 1 and warning[0].startswith("providers.openai.keys[1]")


def test_unset_env_in_a_credential_block_skips_the_key(tmp_path: Path) -> None:
    bedrock = {
        "keys": [
            {
                "name": "aws",
                "weight": 1,
                "bedrock_key_config": {"access_key": "env.NO_AK", "secret_key": "env.NO_SK", "region": "us-east-1"},
            }
        ]
    }
    cfg = load(tmp_path, {"bedrock": bedrock})
    assert cfg.providers["bedrock"].keys == ()
    assert cfg.providers["bedrock"].missing_env == ("NO_AK",)


def test_provider_without_usable_keys_fails_each_request_naming_the_variable(tmp_path: Path) -> None:
    cfg = load(tmp_path, {"openai": openai({"name": "k", "value": "env.GONE_KEY", "weight": 1})})
    assert any("providers.openai: no usable key" in w and "GONE_KEY" in w for w in cfg.warnings), cfg.warnings
    router = Router.build(cfg.providers, cfg.client)
    for model in ("openai/gpt-4o-mini", "gpt-4o-mini"):
        with pytest.raises(GatewayError, match="GONE_KEY") as exc:
            router.resolve(model)
        assert exc.value.status == 503


def test_gateway_starts_and_answers_with_the_missing_variable(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    config = make_config(
        {
            "openai": openai_provider(
                fake_openai.url, keys=({"name": "k", "value": "env.GONE_FOR_TEST", "weight": 1},)
            ),
            "sgl": {"keys": [{"name": "s", "value": "sk-fake-1"}], "network_config": {"base_url": fake_openai.url}},
        }
    )
    gateway = start_gateway(config)
    err = gateway.stderr_path.read_text(errors="replace")
    assert "GONE_FOR_TEST" in err, err
    with gateway.client() as client:
        answer = client.chat.completions.create(model="sgl/my-model", messages=[{"role": "user", "content": "x"}])
        assert answer.choices[0].message.content == "fake-openai: x"
        with pytest.raises(Exception) as exc:
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert "GONE_FOR_TEST" in str(exc.value)
    assert getattr(exc.value, "status_code", None) == 503
    assert len(fake_openai.requests) == 1  # the keyless request never left the gateway

"""config.json `governance`: Go Bifrost's schema read into GovernanceConfig, errors with field paths,
warnings for what is not implemented, keys held as digests only; and Go's example configs load."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from typing import Any

import openai
import pytest
from fakes import FakeOpenAI
from harness import Gateway
from harness.config import make_config, openai_provider
from harness.process import REPO_ROOT

from runtime.config.load import ConfigError, check_governance, parse_document
from runtime.config.model import GatewayConfig, Tuning
from runtime.governance.entities import digest
from runtime.plugins import registry

EXAMPLES = REPO_ROOT / "tests" / "fixtures" / "go_examples"  # copies of Go Bifrost's examples/
SECRET = "sk-bf-config-secret-value-0001"


def base(**governance: Any) -> dict[str, Any]:
    config = make_config({"openai": openai_provider("http://127.0.0.1:9")})
    config["governance"] = {
        "budgets": [{"id": "b1", "max_limit": 5, "reset_duration": "1d"}],
        "rate_limits": [{"id": "r1", "request_max_limit": 10, "request_reset_duration": "1m"}],
        "customers": [{"id": "c1", "name": "Acme", "budget_id": "b1"}],
        "teams": [{"id": "t1", "name": "Team", "customer_id": "c1", "rate_limit_id": "r1"}],
        "virtual_keys": [{"id": "vk1", "name": "one", "value": SECRET, "team_id": "t1"}],
        **governance,
    }
    return config


def load(raw: dict[str, Any], env: dict[str, str] | None = None) -> tuple[GatewayConfig, tuple[str, ...]]:
    env = env or {}
    providers, client, warnings = parse_document(raw, env, Tuning())
    governance = check_governance(raw, env, providers, client, [])
    return GatewayConfig(providers=providers, client=client, governance=governance, raw=raw), warnings


def error_of(raw: dict[str, Any], env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load(raw, env)
    return err.value


def edit(path: str, value: Any, **over: Any) -> dict[str, Any]:
    """base() with one field (a dotted path with [i] indexes under `governance`) set to `value`."""
    raw = base(**over)
    node: Any = raw["governance"]
    parts = path.replace("]", "").replace("[", ".").split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    node[parts[-1]] = value
    return raw


# -- the model -----------------------------------------------------------------------------------------------
def test_entities_chain_and_the_key_is_held_as_a_digest_only() -> None:
    config, warnings = load(base())
    gov = config.governance
    assert gov is not None and warnings == ()
    (vk,) = gov.virtual_keys
    assert vk.value_digest == digest(SECRET) and vk.team_id == "t1"
    assert gov.customer_of(vk) is gov.customers["c1"]
    assert gov.teams["t1"].rate_limit == gov.rate_limits["r1"]
    # Spawned workers get the config by pickle: it must survive, without the plaintext in the entities.
    clone = pickle.loads(pickle.dumps(config))
    assert clone.governance == gov
    assert SECRET.encode() not in pickle.dumps(gov)
    assert SECRET not in repr(gov)


def test_env_value_missing_variable_skips_the_key_with_a_warning() -> None:
    raw = edit("virtual_keys[0].value", "env.TEST_VK_VALUE")
    config, _ = load(raw, {"TEST_VK_VALUE": SECRET})
    assert config.governance is not None and config.governance.virtual_keys[0].value_digest == digest(SECRET)
    config, warnings = load(raw, {})
    assert config.governance is not None and config.governance.virtual_keys == ()
    assert any("virtual_keys[0]: skipped, environment variable TEST_VK_VALUE" in w for w in warnings)


# -- errors with paths ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "value", "where", "words"),
    [
        ("virtual_keys[0].team_id", "t9", "governance.virtual_keys[0].team_id", "no team with id 't9'"),
        ("virtual_keys[0].budget_id", "b2", "governance.virtual_keys[0].budget_id", "no budget with id 'b2'"),
        ("virtual_keys[0].rate_limit_id", "nope", "governance.virtual_keys[0].rate_limit_id", "no rate_limit"),
        ("teams[0].customer_id", "c2", "governance.teams[0].customer_id", "no customer with id 'c2'"),
        ("customers[0].budget_id", "zz", "governance.customers[0].budget_id", "no budget"),
        ("virtual_keys[0].customer_id", "c1", "governance.virtual_keys[0].customer_id", "not both"),
        ("virtual_keys[0].value", "", "governance.virtual_keys[0].value", "is required"),
        ("virtual_keys[0].is_active", "yes", "governance.virtual_keys[0].is_active", "true or false"),
        ("virtual_keys[0].expires_at", "tomorrow", "governance.virtual_keys[0].expires_at", "RFC 3339"),
        ("virtual_keys[0].provider_confgs", [], "governance.virtual_keys[0].provider_confgs", "provider_configs"),
        ("budgets[0].reset_duration", "1 day", "governance.budgets[0].reset_duration", "duration"),
        ("budgets[0].max_limit", -1, "governance.budgets[0].max_limit", "zero or more"),
        ("rate_limits[0].request_reset_duration", None, "governance.rate_limits[0].request_reset_duration", "required"),
        ("teams[0].id", "", "governance.teams[0].id", "must not be empty"),
        (
            "virtual_keys[0].provider_configs",
            [{"weight": 1}],
            "governance.virtual_keys[0].provider_configs[0].provider",
            "required",
        ),
    ],
)
def test_config_errors_name_the_field_path(path: str, value: Any, where: str, words: str) -> None:
    err = error_of(edit(path, value))
    assert err.path == where, str(err)
    assert words in err.message, str(err)


def test_duplicates_are_errors_and_never_echo_the_value() -> None:
    raw = base()
    raw["governance"]["virtual_keys"].append({"id": "vk1", "name": "again", "value": "sk-bf-other"})
    assert error_of(raw).path == "governance.virtual_keys[1].id"
    raw["governance"]["virtual_keys"][1]["id"] = "vk2"
    raw["governance"]["virtual_keys"][1]["value"] = "env.SAME"
    err = error_of(raw, {"SAME": SECRET})
    assert err.path == "governance.virtual_keys[1].value" and "vk1" in err.message
    assert SECRET not in str(err) and "env.SAME" in str(err)
    raw["governance"]["virtual_keys"][1]["value"] = "env.ODD"
    _, warnings = load(raw, {"ODD": "not-prefixed-secret"})
    (odd,) = [w for w in warnings if w.startswith("governance.virtual_keys[1].value")]
    assert "x-bf-vk" in odd and "env.ODD" in odd and "not-prefixed-secret" not in odd


def test_go_fields_we_lack_are_warnings_never_silent() -> None:
    raw = base(routing_rules=[{"id": "r", "name": "r", "targets": [{"provider": "openai"}]}], model_configs=[])
    raw["governance"]["budgets"][0]["current_usage"] = 1.5
    raw["governance"]["virtual_keys"][0]["mcp_configs"] = []
    raw["plugins"] = [{"name": "governance", "config": {"is_vk_mandatory": True, "required_headers": ["x-a"]}}]
    raw["client"]["enforce_governance_header"] = True  # Go's deprecated spelling: read, not ignored
    config, warnings = load(raw)
    text = "\n".join(warnings)
    for where in (
        "governance.routing_rules",
        "governance.model_configs",
        "governance.budgets[0].current_usage",
        "governance.virtual_keys[0].mcp_configs",
        "plugins[0].config.required_headers",
    ):
        assert f"{where}: Go Bifrost setting not implemented" in text, where
    assert config.client.enforce_auth_on_inference is True
    # A misspelt switch of ours is a typo, not "a Go setting we lack".
    raw["plugins"] = [{"name": "governance", "config": {"is_vk_mandtory": True}}]
    assert error_of(raw).path == "plugins[0].config.is_vk_mandtory"


def test_the_plugin_exists_only_when_governance_is_configured() -> None:
    def names(raw: dict[str, Any]) -> list[str]:
        config, _ = load(raw)
        return [p.name for p in registry.build(config.plugins, registry.PluginEnv(config))]

    plain = make_config({"openai": openai_provider("http://127.0.0.1:9")})
    assert "governance" not in names(plain)  # no plugin: requests pay nothing
    assert "governance" in names(base())
    assert "governance" in names({**plain, "client": {**plain["client"], "enforce_auth_on_inference": True}})


# -- Go Bifrost's example configs ----------------------------------------------------------------------------
EXAMPLE_ENV = {
    "BIFROST_VK_PROD_ASSISTANT_US_01": "sk-bf-test-us-value",
    "OPENAI_API_KEY_US_EAST_1": "sk-fake-openai",
    "AZURE_OPENAI_API_KEY_US_EAST_1": "azure-fake-1",
    "AZURE_OPENAI_API_KEY_US_EAST_2": "azure-fake-2",
    "AZURE_OPENAI_API_KEY_EU_CENTRAL_1": "azure-fake-3",
    "BIFROST_ADMIN_USERNAME": "admin",
    "BIFROST_ADMIN_PASSWORD": "pw",
}


@pytest.mark.parametrize("name", ["withvirtualkeys", "withauth", "withroutingrules"])
def test_go_examples_load(name: str) -> None:
    raw = json.loads((EXAMPLES / f"{name}.json").read_text())
    config, warnings = load(copy.deepcopy(raw), EXAMPLE_ENV)
    if name == "withvirtualkeys":
        assert config.client.enforce_auth_on_inference is True
        assert config.governance is not None and len(config.governance.virtual_keys) == 2
    else:
        assert any(w.startswith("governance.") for w in warnings)


def test_go_virtual_keys_example_is_enforced(start_gateway: Callable[..., Gateway], fake_openai: FakeOpenAI) -> None:
    raw = json.loads((EXAMPLES / "withvirtualkeys.json").read_text())
    # The one change: its OpenAI provider points at the fake (no request may leave the machine).
    raw["providers"]["openai"]["network_config"] = {"base_url": fake_openai.url, "max_retries": 0}
    gw = start_gateway(raw, env={**EXAMPLE_ENV, "OPENAI_API_KEY_US_EAST_1": "sk-fake-1"})
    with gw.client() as client, pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with gw.client(api_key="sk-bf-vk-prod-assistant-eu-01") as client, pytest.raises(openai.PermissionDeniedError) as e:
        client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["type"] == "provider_blocked"  # type: ignore[index]
    with gw.client(api_key="sk-bf-test-us-value") as client:  # the US key (from env) may use openai
        answer = client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    assert [r.bearer for r in fake_openai.requests] == ["sk-fake-1"]  # allowed_keys: openai-us-key-1-prod

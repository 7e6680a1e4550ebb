"""Config for the native providers: Go Bifrost's key blocks (with env.NAME references inside them), the
zero-config environment start, and the registry/capability tables agreeing with the adapters."""

from __future__ import annotations

import pytest

from runtime.config.load import parse_provider, providers_from_env
from runtime.config.model import Tuning
from runtime.providers import ADAPTERS
from runtime.providers.capabilities import CAPABILITIES
from runtime.providers.registry import PROVIDER_SPECS


def test_env_references_inside_key_blocks_are_resolved() -> None:
    data = {
        "keys": [
            {
                "name": "sa",
                "value": "",
                "vertex_key_config": {
                    "project_id": "env.GCP_PROJECT",
                    "region": "us-central1",
                    "auth_credentials": "env.SA_JSON",
                },
            }
        ]
    }
    config = parse_provider("vertex", data, {"GCP_PROJECT": "proj-1", "SA_JSON": '{"client_email": "x"}'}, Tuning())
    block = config.keys[0].extra["vertex_key_config"]
    assert block == {"project_id": "proj-1", "region": "us-central1", "auth_credentials": '{"client_email": "x"}'}
    # Issue 9 item 18: an unset variable skips the key (as Go Bifrost does) with a warning naming it.
    warnings: list[str] = []
    skipped = parse_provider("vertex", data, {"SA_JSON": "{}"}, Tuning(), warnings=warnings)
    assert skipped.keys == () and skipped.missing_env == ("GCP_PROJECT",)
    assert any("keys[0]" in w and "GCP_PROJECT" in w for w in warnings), warnings


def test_bedrock_from_aws_environment() -> None:
    environ = {
        "AWS_ACCESS_KEY_ID": "AKIAX",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_SESSION_TOKEN": "t",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_REGION": "eu-central-1",
        "ANTHROPIC_API_KEY": "sk-ant",
    }
    found = providers_from_env(environ, Tuning())
    assert set(found) == {"bedrock", "anthropic"}
    block = found["bedrock"].keys[0].extra["bedrock_key_config"]
    assert block == {"access_key": "AKIAX", "secret_key": "s", "session_token": "t", "region": "eu-central-1"}
    assert found["anthropic"].keys[0].value == "sk-ant"
    assert found["anthropic"].network.base_url == "https://api.anthropic.com"


def test_bedrock_and_vertex_keys_need_no_value() -> None:
    config = parse_provider(
        "bedrock",
        {"keys": [{"name": "k", "bedrock_key_config": {"access_key": "a", "secret_key": "b", "region": "us-west-2"}}]},
        {},
        Tuning(),
    )
    assert config.keys[0].value == ""
    assert config.network.base_url == "https://bedrock-runtime.{region}.amazonaws.com"


@pytest.mark.parametrize("name", ["anthropic", "gemini", "vertex", "bedrock", "cohere"])
def test_every_native_row_has_an_adapter_and_capabilities(name: str) -> None:
    spec = PROVIDER_SPECS[name]
    adapter = ADAPTERS[spec.kind]
    assert adapter.operations == CAPABILITIES[spec.kind].operations
    assert spec.default_models, "listed by /v1/models when the config names no models"

"""Secrets at rest (runtime/stores/secrets.py): which fields are sealed, and that only the key opens them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runtime.stores import secrets

SALT = bytes(range(16))

DOC: dict[str, Any] = {
    "providers": {
        "openai": {"keys": [{"name": "k1", "value": "sk-live-secret-1", "models": [], "weight": 1}]},
        "anthropic": {"keys": [{"name": "k2", "value": "env.ANTHROPIC_API_KEY"}]},
        "bedrock": {
            "keys": [
                {
                    "name": "b",
                    "value": "",
                    "bedrock_key_config": {
                        "access_key": "AKIA-secret-access",
                        "secret_key": "bedrock-secret-key",
                        "region": "us-east-1",
                    },
                }
            ]
        },
        "vertex": {
            "keys": [{"name": "v", "vertex_key_config": {"project_id": "proj-1", "auth_credentials": "{sa-json}"}}]
        },
    },
    "governance": {"virtual_keys": [{"id": "vk", "value": "sk-bf-virtual-0001", "is_active": True}]},
    "admin": {"token": "admin-token-secret"},
    "plugins": [
        {
            "name": "semantic_cache",
            "config": {"api_key": "cache-key-secret", "max_tokens": "7", "store": {"redis_password": "pw-secret"}},
        }
    ],
}
SECRETS = (
    "sk-live-secret-1",
    "AKIA-secret-access",
    "bedrock-secret-key",
    "{sa-json}",
    "sk-bf-virtual-0001",
    "admin-token-secret",
    "cache-key-secret",
    "pw-secret",
)


@pytest.fixture(scope="module")
def cipher() -> secrets.Cipher:
    return secrets.Cipher(secrets.derive_key("correct horse", SALT))


def test_seal_encrypts_every_secret_field_and_nothing_else(cipher: secrets.Cipher) -> None:
    sealed = secrets.seal(DOC, cipher)
    text = json.dumps(sealed)
    for secret in SECRETS:
        assert secret not in text
    assert set(secrets.encrypted_fields(sealed)) == {
        "providers.openai.keys[0].value",
        "providers.bedrock.keys[0].bedrock_key_config.access_key",
        "providers.bedrock.keys[0].bedrock_key_config.secret_key",
        "providers.vertex.keys[0].vertex_key_config.auth_credentials",
        "governance.virtual_keys[0].value",
        "admin.token",
        "plugins[0].config.api_key",
        "plugins[0].config.store.redis_password",
    }
    # References and non-secret fields stay readable: they hold no secret, and operators read them.
    assert sealed["providers"]["anthropic"]["keys"][0]["value"] == "env.ANTHROPIC_API_KEY"
    assert sealed["providers"]["bedrock"]["keys"][0]["bedrock_key_config"]["region"] == "us-east-1"
    assert sealed["providers"]["vertex"]["keys"][0]["vertex_key_config"]["project_id"] == "proj-1"
    assert sealed["plugins"][0]["config"]["max_tokens"] == "7"
    assert secrets.unseal(sealed, cipher) == DOC
    assert DOC["admin"]["token"] == "admin-token-secret"  # the input is never modified


def test_each_value_gets_its_own_nonce(cipher: secrets.Cipher) -> None:
    a, b = secrets.seal(DOC, cipher), secrets.seal(DOC, cipher)
    assert a["admin"]["token"] != b["admin"]["token"]
    assert a["admin"]["token"].startswith(secrets.PREFIX)


def test_a_wrong_key_or_a_moved_ciphertext_is_refused(cipher: secrets.Cipher) -> None:
    sealed = secrets.seal(DOC, cipher)
    other = secrets.Cipher(secrets.derive_key("wrong horse", SALT))
    assert other.check != cipher.check
    with pytest.raises(secrets.SecretsError, match="cannot be decrypted") as info:
        secrets.unseal(sealed, other)
    assert "sk-" not in str(info.value)
    # A ciphertext pasted into another field does not open there (the path is authenticated).
    moved = json.loads(json.dumps(sealed))
    moved["admin"]["token"] = sealed["governance"]["virtual_keys"][0]["value"]
    with pytest.raises(secrets.SecretsError, match=r"admin\.token"):
        secrets.unseal(moved, cipher)


def test_an_encrypted_document_without_a_key_is_refused(cipher: secrets.Cipher) -> None:
    with pytest.raises(secrets.SecretsError, match="no encryption_key is configured"):
        secrets.unseal(secrets.seal(DOC, cipher), None)
    assert secrets.seal(DOC, None) == DOC  # no key: plain text, as Go Bifrost
    assert "admin.token" in secrets.plaintext_secrets(DOC)


def test_plugin_secret_names() -> None:
    assert all(secrets.is_plugin_secret(n) for n in ("password", "api_key", "TOKEN", "redis_password", "x_secret"))
    assert not any(secrets.is_plugin_secret(n) for n in ("max_tokens", "tokenizer", "key", "passwords_file"))

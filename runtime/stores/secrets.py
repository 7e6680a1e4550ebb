"""Secrets at rest in a config store: which fields of the document are secret, and their encryption.

    Key       Argon2id (RFC 9106's second recommended setting: 3 passes, 64 MiB, 4 lanes) of the
              `encryption_key` passphrase and a random 16-byte salt kept beside the document; derived once
              per store opening, in a thread (it takes ~100 ms of CPU on purpose). A key-check value
              (HMAC-SHA256 of a fixed label under the key) is stored with the salt, so that a wrong or
              changed passphrase fails start-up with a clear message instead of garbling secrets: once set,
              the encryption key cannot be changed (as in Go Bifrost).
    Values    AES-256-GCM, a random 96-bit nonce per value, stored as "enc:v1:<base64(nonce|ciphertext)>".
              The field's path is the associated data, so a ciphertext moved to another field fails.

Secret fields (`SECRET_PATHS` below): a provider key's `value` and the secret fields of its credential blocks
(Azure has none besides `value`; Bedrock's access/secret key and session token; Vertex's service-account
JSON), `governance.virtual_keys[].value`, `admin.token`, and any string under `plugins[].config` whose
field is named password / token / api_key / secret (or ends with `_password`, `_token`, `_api_key`,
`_secret`). An `env.NAME` reference holds no secret and stays as it is; so does an empty string.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

PREFIX = "enc:v1:"
SALT_BYTES = 16
NONCE_BYTES = 12
KDF_ITERATIONS = 3
KDF_LANES = 4
KDF_MEMORY_KIB = 64 * 1024
_CHECK_LABEL = b"bifrost config store key check v1"

# Credential-block fields that are secret (the others: region, arn, project_id, deployments, endpoint...).
CREDENTIAL_SECRETS: dict[str, tuple[str, ...]] = {
    "bedrock_key_config": ("access_key", "secret_key", "session_token"),
    "vertex_key_config": ("auth_credentials",),
    "azure_key_config": (),
}
_PLUGIN_SECRET_NAMES = ("password", "token", "api_key", "secret")


class SecretsError(Exception):
    """The document's secrets cannot be opened or sealed with the configured key. Never holds a secret."""


def is_plugin_secret(name: str) -> bool:
    lowered = name.lower()
    return any(lowered == n or lowered.endswith("_" + n) for n in _PLUGIN_SECRET_NAMES)


def _needs_care(value: Any) -> bool:
    """A string that may be a secret: not empty and not an `env.NAME` reference."""
    return isinstance(value, str) and value != "" and not value.startswith("env.")


class Cipher:
    """AES-256-GCM over one derived key."""

    __slots__ = ("_aead", "check")

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self.check = hmac.new(key, _CHECK_LABEL, hashlib.sha256).hexdigest()

    def encrypt(self, text: str, where: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, text.encode("utf-8"), where.encode("utf-8"))
        return PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, text: str, where: str) -> str:
        try:
            blob = base64.b64decode(text[len(PREFIX) :], validate=True)
            plain = self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], where.encode("utf-8"))
            return plain.decode("utf-8")
        except (InvalidTag, ValueError) as exc:
            raise SecretsError(f"{where}: the stored secret cannot be decrypted with this encryption key") from exc


def derive_key(passphrase: str, salt: bytes) -> bytes:
    """The 32-byte AES key of `passphrase` and `salt` (Argon2id; CPU-heavy on purpose: call in a thread)."""
    kdf = Argon2id(
        salt=salt, length=32, iterations=KDF_ITERATIONS, lanes=KDF_LANES, memory_cost=KDF_MEMORY_KIB, ad=None
    )
    return kdf.derive(passphrase.encode("utf-8"))


async def open_cipher(passphrase: str, salt: bytes) -> Cipher:
    """A Cipher for `passphrase` and `salt`, its key derived off the event loop."""
    key = await asyncio.to_thread(derive_key, passphrase, salt)
    return Cipher(key)


def new_salt() -> bytes:
    return os.urandom(SALT_BYTES)


# -- which fields are secret --------------------------------------------------------------------------
Visit = Callable[[Any, str], Any]  # (value, path) -> the value to keep


def _visit_secrets(doc: dict[str, Any], visit: Visit) -> None:
    """Call `visit(value, path)` on every secret field of `doc` (in place: the field takes the result)."""
    providers = doc.get("providers")
    if isinstance(providers, dict):
        for name, provider in providers.items():
            keys = provider.get("keys") if isinstance(provider, dict) else None
            if not isinstance(keys, list):
                continue
            for i, key in enumerate(keys):
                if not isinstance(key, dict):
                    continue
                path = f"providers.{name}.keys[{i}]"
                _visit_field(key, "value", f"{path}.value", visit)
                for block, secret_fields in CREDENTIAL_SECRETS.items():
                    inner = key.get(block)
                    if isinstance(inner, dict):
                        for field in secret_fields:
                            _visit_field(inner, field, f"{path}.{block}.{field}", visit)
    governance = doc.get("governance")
    vks = governance.get("virtual_keys") if isinstance(governance, dict) else None
    if isinstance(vks, list):
        for i, vk in enumerate(vks):
            if isinstance(vk, dict):
                _visit_field(vk, "value", f"governance.virtual_keys[{i}].value", visit)
    admin = doc.get("admin")
    if isinstance(admin, dict):
        _visit_field(admin, "token", "admin.token", visit)
    plugins = doc.get("plugins")
    if isinstance(plugins, list):
        for i, plugin in enumerate(plugins):
            config = plugin.get("config") if isinstance(plugin, dict) else None
            if isinstance(config, dict):
                _visit_plugin_tree(config, f"plugins[{i}].config", visit)


def _visit_field(holder: dict[str, Any], field: str, path: str, visit: Visit) -> None:
    if field in holder and isinstance(holder[field], str):
        holder[field] = visit(holder[field], path)


def _visit_plugin_tree(node: dict[str, Any], path: str, visit: Visit) -> None:
    for name, value in node.items():
        where = f"{path}.{name}"
        if isinstance(value, dict):
            _visit_plugin_tree(value, where, visit)
        elif isinstance(value, str) and is_plugin_secret(str(name)):
            node[name] = visit(value, where)


# -- sealing and opening a whole document -------------------------------------------------------------
def seal(doc: dict[str, Any], cipher: Cipher | None) -> dict[str, Any]:
    """A copy of `doc` with every secret field encrypted (`cipher` None: the copy, as plain text)."""
    out = copy.deepcopy(doc)
    if cipher is None:
        return out

    def encrypt(value: Any, path: str) -> Any:
        if not _needs_care(value) or value.startswith(PREFIX):
            return value
        return cipher.encrypt(value, path)

    _visit_secrets(out, encrypt)
    return out


def unseal(doc: dict[str, Any], cipher: Cipher | None) -> dict[str, Any]:
    """A copy of `doc` with every encrypted field decrypted. Raises SecretsError when a field is encrypted
    and there is no key, or the key does not open it."""
    out = copy.deepcopy(doc)

    def decrypt(value: Any, path: str) -> Any:
        if not (isinstance(value, str) and value.startswith(PREFIX)):
            return value
        if cipher is None:
            raise SecretsError(
                f"{path} is encrypted in the config store but no encryption_key is configured "
                "(set encryption_key in config.json or the BIFROST_ENCRYPTION_KEY environment variable)"
            )
        return cipher.decrypt(value, path)

    _visit_secrets(out, decrypt)
    return out


def plaintext_secrets(doc: dict[str, Any]) -> list[str]:
    """The paths of secret fields that hold plain text (neither encrypted nor an env.NAME reference)."""
    found: list[str] = []

    def note(value: Any, path: str) -> Any:
        if _needs_care(value) and not value.startswith(PREFIX):
            found.append(path)
        return value

    _visit_secrets(copy.deepcopy(doc), note)
    return found


def encrypted_fields(doc: dict[str, Any]) -> list[str]:
    """The paths of secret fields stored encrypted."""
    found: list[str] = []

    def note(value: Any, path: str) -> Any:
        if isinstance(value, str) and value.startswith(PREFIX):
            found.append(path)
        return value

    _visit_secrets(copy.deepcopy(doc), note)
    return found

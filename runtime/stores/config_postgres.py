"""The PostgreSQL config store: the config document in one row, edited under a row lock, followed by
LISTEN/NOTIFY, secrets encrypted at rest (runtime/stores/secrets.py). docs/config-store.md is the guide.

Tables (every name prefixed `bifrost_config_`: the log store and the cache live in the same database)

    bifrost_config_migrations  id, name, applied_at: the numbered migrations below, recorded by id
    bifrost_config_document    one row (id = 1): document jsonb, version bigint, seed_hash, updated_at
    bifrost_config_meta        key -> value: the encryption salt and key-check value

Opening (`open_from_config`), in one transaction under a transaction-level advisory lock, so that of several
instances starting at once with the same file exactly one migrates and seeds:
    1. run the migrations not yet recorded
    2. the encryption key: derive it from `encryption_key` and the stored salt (first time: a new salt),
       check it against the stored key-check value (a different key fails: it cannot be changed)
    3. the document: none yet -> the start-up config.json minus its bootstrap blocks (`BOOTSTRAP_FIELDS`:
       where config lives, never stored) is written as version 1 with the file's hash. Later: if the file's
       hash differs from the recorded one, an operator edited the file: the file wins (a new version, logged);
       otherwise the database wins, so edits made through the UI/API persist across restarts.
`current` is the database's document built like the embedded store builds config.json; `raw` is that
document plus the start-up file's bootstrap blocks.

`apply(change)`: one transaction bounded by WRITE_TIMEOUT_S: SELECT ... FOR UPDATE (the latest document, so
an edit made on another instance is never undone), change, validate (ConfigError: nothing written), write
version + 1 and NOTIFY bifrost_config '<version>' in the same transaction (delivered on commit only).

`changes()`: a dedicated connection LISTENs on `bifrost_config`; a notification (or the 5 s safety read)
reads the row and yields the new config when its version is newer than ours. A lost connection is
reconnected with backoff (0.2 s .. 5 s) and the row re-read once: notifications sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import errno
import hashlib
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import asyncpg

from runtime.config.groups import parse_model_groups
from runtime.config.load import ConfigError, check_governance, parse_document, parse_guardrails_block, parse_plugins
from runtime.config.model import ClientConfig, GatewayConfig, PostgresSettings
from runtime.config.stores import BOOTSTRAP_FIELDS
from runtime.stores import pg, secrets
from runtime.stores.config import ConfigStore, ConfigWriteError, Raw, env_providers_raw
from runtime.stores.status import StoreStatus

log = logging.getLogger("bifrost.config")

CHANNEL = "bifrost_config"
# Any constant works: it only has to be the same for every instance (pg_advisory_xact_lock takes a bigint).
ADVISORY_LOCK_ID = 0x62_69_66_72_6F_73_74  # "bifrost"
WRITE_TIMEOUT_S = 5.0  # bound on one edit (connect + lock + write); the admin API answers 503 after it
READ_TIMEOUT_S = 5.0  # bound on one read of the document by the change feed
SAFETY_INTERVAL_S = 5.0  # the feed re-reads the version this often even without a notification
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.2, 5.0
CLOSE_TIMEOUT_S = 5.0

SALT_KEY = "encryption_salt"
CHECK_KEY = "encryption_check"

# Numbered migrations, recorded by id in bifrost_config_migrations (never edit one that shipped: add one).
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "document and meta",
        """
        CREATE TABLE bifrost_config_document (
            id smallint PRIMARY KEY CHECK (id = 1),
            document jsonb NOT NULL,
            version bigint NOT NULL,
            seed_hash text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE bifrost_config_meta (key text PRIMARY KEY, value text NOT NULL);
        """,
    ),
)


# What "the server is not usable right now" looks like, with and without a refused statement.
_DOWN: tuple[type[BaseException], ...] = (pg.PostgresUnavailable, *pg.CONNECTION_ERRORS)
_DOWN_OR_SQL: tuple[type[BaseException], ...] = (*_DOWN, asyncpg.PostgresError)
_CLOSE_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *pg.CONNECTION_ERRORS, asyncpg.PostgresError)


class ConfigStoreOpenError(Exception):
    """The store could not be opened (server down, wrong encryption key, invalid stored document).
    `retryable`: the server may come back (start-up retries); otherwise retrying cannot help."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def strip_bootstrap(raw: Mapping[str, Any]) -> Raw:
    """The document a config store keeps: `raw` without the blocks that say where config lives."""
    return {k: copy.deepcopy(v) for k, v in raw.items() if k not in BOOTSTRAP_FIELDS}


def bootstrap_blocks(raw: Mapping[str, Any]) -> Raw:
    return {k: copy.deepcopy(v) for k, v in raw.items() if k in BOOTSTRAP_FIELDS}


def document_hash(doc: Mapping[str, Any]) -> str:
    """The seed file's fingerprint: SHA-256 of its canonical JSON (bootstrap blocks already removed)."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return "sha256:" + hashlib.sha256(text).hexdigest()


class PostgresConfigStore:
    """The config document of one PostgreSQL database, shared by every instance pointed at it."""

    def __init__(
        self,
        startup: GatewayConfig,
        settings: PostgresSettings,
        pool: asyncpg.Pool,
        cipher: secrets.Cipher | None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.cipher = cipher
        self.environ = os.environ if environ is None else environ
        self.label = settings.describe()  # how log lines name this store (runtime/live.py)
        self.status = StoreStatus("postgres", f"{settings.host}:{settings.port}/{settings.database}")
        self._startup = startup
        self._client_defaults: ClientConfig = startup.client
        self._bootstrap = bootstrap_blocks(startup.raw)
        self.current = startup
        self.raw: Raw = copy.deepcopy(dict(startup.raw))
        self.version = 0
        self._lock = asyncio.Lock()  # one edit or refresh at a time in this process
        self._bad_version = 0  # the last stored version that failed validation (logged once)

    # -- opening -------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: GatewayConfig) -> PostgresConfigStore:
        """Not available: this store must connect and read its document first (`open_from_config`)."""
        raise TypeError(
            "the PostgreSQL config store is opened with `await engines.open_config_store(config)` "
            "(runtime/server.py does it before create_app)"
        )

    @classmethod
    async def open_from_config(cls, config: GatewayConfig) -> PostgresConfigStore:
        """Connect, migrate, check the key, seed or reconcile with config.json, read the document.
        Raises ConfigStoreOpenError (its message names host:port/db, never a secret)."""
        settings = config.stores.config
        if settings is None:
            raise ConfigStoreOpenError("config_store is not a postgres store", retryable=False)
        try:
            pool = await pg.connect_pool(settings)
        except pg.PostgresUnavailable as exc:
            raise ConfigStoreOpenError(str(exc), retryable=True) from None
        try:
            store = await cls._open_on(config, settings, pool)
        except BaseException:
            await _close_pool(pool)
            raise
        return store

    @classmethod
    async def _open_on(
        cls, config: GatewayConfig, settings: PostgresSettings, pool: asyncpg.Pool
    ) -> PostgresConfigStore:
        seed = strip_bootstrap(config.raw)
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_LOCK_ID)
                await migrate(conn)
                cipher = await _key(conn, config.stores.encryption_key, settings)
                row = await conn.fetchrow(
                    "SELECT document::text AS document, version, seed_hash FROM bifrost_config_document WHERE id = 1"
                )
                file_hash = document_hash(seed)
                if row is None:
                    version = 1
                    document = seed
                    await conn.execute(
                        "INSERT INTO bifrost_config_document (id, document, version, seed_hash) "
                        "VALUES (1, $1::jsonb, 1, $2)",
                        json.dumps(secrets.seal(seed, cipher)),
                        file_hash,
                    )
                    log.info("config store %s: seeded from config.json", settings.describe())
                elif row["seed_hash"] != file_hash:
                    version = row["version"] + 1
                    document = seed
                    await conn.execute(
                        "UPDATE bifrost_config_document SET document = $1::jsonb, version = $2, seed_hash = $3, "
                        "updated_at = now() WHERE id = 1",
                        json.dumps(secrets.seal(seed, cipher)),
                        version,
                        file_hash,
                    )
                    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(version))
                    log.warning(
                        "config store %s: config.json was edited since it seeded the store: the file's document "
                        "replaces the stored one (version %d); edits made through the API since are overwritten",
                        settings.describe(),
                        version,
                    )
                else:
                    version = row["version"]
                    stored = json.loads(row["document"])
                    document = secrets.unseal(stored, cipher)
                    if cipher is not None and secrets.plaintext_secrets(stored):
                        # A key was configured after secrets were stored as plain text: encrypt them now.
                        version += 1
                        await conn.execute(
                            "UPDATE bifrost_config_document SET document = $1::jsonb, version = $2, "
                            "updated_at = now() WHERE id = 1",
                            json.dumps(secrets.seal(document, cipher)),
                            version,
                        )
                        log.info("config store %s: secrets stored as plain text are now encrypted", settings.describe())
        except secrets.SecretsError as exc:
            raise ConfigStoreOpenError(f"config store {settings.describe()}: {exc}", retryable=False) from None
        except _DOWN as exc:
            raise ConfigStoreOpenError(str(pg.unavailable(settings, exc)), retryable=True) from None
        except asyncpg.PostgresError as exc:  # refused (permissions, a foreign table in the way): say which
            raise ConfigStoreOpenError(str(pg.unavailable(settings, exc)), retryable=False) from None
        if cipher is None:
            log.warning(
                "config store %s: no encryption_key is configured: provider keys and virtual keys are stored as "
                "plain text (set encryption_key or BIFROST_ENCRYPTION_KEY to encrypt them)",
                settings.describe(),
            )
        store = cls(config, settings, pool, cipher)
        try:
            store._adopt(document, version)
        except ConfigError as exc:
            raise ConfigStoreOpenError(
                f"config store {settings.describe()}: the stored document (version {version}) is invalid: {exc}",
                retryable=False,
            ) from None
        store.status.ok()
        return store

    async def close(self) -> None:
        """Close the pool (bounded: a server that does not answer is cut off)."""
        await _close_pool(self.pool)

    # -- building ------------------------------------------------------------------------------------
    def build(self, raw: Mapping[str, Any]) -> GatewayConfig:
        """Validate a whole raw document into a GatewayConfig (raises ConfigError). As the embedded store:
        the client block's absent keys keep start-up's (profile) values. The bootstrap blocks were checked at
        start-up and never change at run time: they stay start-up's, carried in `raw` but not re-read."""
        doc = strip_bootstrap(raw)
        providers, client, warnings = parse_document(doc, self.environ, self._startup.tuning, self._client_defaults)
        return dataclasses.replace(
            self._startup,
            providers=MappingProxyType(providers),
            client=client,
            governance=check_governance(doc, self.environ, providers, client, []),
            plugins=parse_plugins(doc.get("plugins"), []),
            model_groups=parse_model_groups(doc.get("model_groups"), providers),
            guardrails=parse_guardrails_block(doc),  # checked by parse_document; rules apply live
            raw=MappingProxyType(copy.deepcopy(dict(raw))),
            warnings=warnings,
        )

    def _with_bootstrap(self, document: Mapping[str, Any]) -> Raw:
        raw = strip_bootstrap(document)
        raw.update(copy.deepcopy(self._bootstrap))
        return raw

    def _adopt(self, document: Mapping[str, Any], version: int) -> GatewayConfig:
        raw = self._with_bootstrap(document)
        new = self.build(raw)
        self.raw, self.current, self.version = raw, new, version
        return new

    # -- writing -------------------------------------------------------------------------------------
    async def apply(self, change: Callable[[Raw], Any]) -> tuple[GatewayConfig, Any]:
        """Apply `change(raw)` to the latest stored document and persist it as the next version.

        Raises ConfigError (nothing written) or ConfigWriteError (server down or too slow: nothing written;
        the message names host:port/db only)."""
        async with self._lock:
            try:
                async with asyncio.timeout(WRITE_TIMEOUT_S):
                    new, result = await self._apply_once(change)
            except (ConfigError, secrets.SecretsError):
                self.status.ok()  # the server answered; the edit was refused
                raise
            except _DOWN_OR_SQL as exc:
                reason = pg.unavailable(self.settings, exc)
                self.status.failed(str(reason))
                raise ConfigWriteError(errno.EIO, f"the config store is unavailable ({reason})") from None
            self.status.ok()
            return new, result

    async def _apply_once(self, change: Callable[[Raw], Any]) -> tuple[GatewayConfig, Any]:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT document::text AS document, version FROM bifrost_config_document WHERE id = 1 FOR UPDATE"
            )
            if row is None:  # dropped by hand: the store was opened, so the table exists
                raise ConfigWriteError(errno.ENOENT, f"the config store {self.settings.describe()} has no document")
            draft = self._with_bootstrap(secrets.unseal(json.loads(row["document"]), self.cipher))
            if not isinstance(draft.get("providers"), dict):
                draft["providers"] = env_providers_raw(self.current)
            result = change(draft)
            new = self.build(draft)
            version = int(row["version"]) + 1
            stored = secrets.seal(strip_bootstrap(draft), self.cipher)
            await conn.execute(
                "UPDATE bifrost_config_document SET document = $1::jsonb, version = $2, updated_at = now() "
                "WHERE id = 1",
                json.dumps(stored),
                version,
            )
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(version))
        self.raw, self.current, self.version = draft, new, version
        return new, result

    # -- reading others' edits -----------------------------------------------------------------------
    async def refresh(self) -> GatewayConfig | None:
        """The stored config when its version is newer than ours, else None. An invalid stored document is
        logged once per version and skipped; an unreachable server marks the status down (None)."""
        async with self._lock:
            try:
                async with asyncio.timeout(READ_TIMEOUT_S), self.pool.acquire() as conn:
                    row = await conn.fetchrow(
                        "SELECT document::text AS document, version FROM bifrost_config_document WHERE id = 1"
                    )
            except _DOWN_OR_SQL as exc:
                self.status.failed(str(pg.unavailable(self.settings, exc)))
                return None
            self.status.ok()
            if row is None or row["version"] <= self.version or row["version"] == self._bad_version:
                return None
            try:
                return self._adopt(secrets.unseal(json.loads(row["document"]), self.cipher), int(row["version"]))
            except (ConfigError, secrets.SecretsError) as exc:
                self._bad_version = int(row["version"])
                log.warning(
                    "config store %s: version %d cannot be used, keeping the running config: %s",
                    self.label,
                    row["version"],
                    exc,
                )
                return None

    async def changes(self) -> AsyncIterator[GatewayConfig]:
        """Configs others wrote, as they appear: LISTEN for the notification, read the row (runs until
        cancelled; reconnects on its own)."""
        wake: asyncio.Queue[str] = asyncio.Queue()
        conn: asyncpg.Connection | None = None
        backoff = BACKOFF_MIN_S
        reported = False

        def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            wake.put_nowait(payload)

        def on_lost(_conn: object) -> None:
            wake.put_nowait("")  # wakes the loop, which sees the connection closed and reconnects

        try:
            while True:
                if conn is None or conn.is_closed():
                    await _discard(conn)
                    conn = None
                    try:
                        conn = await pg.connect(self.settings)
                        await conn.add_listener(CHANNEL, on_notify)
                        conn.add_termination_listener(on_lost)
                    except _DOWN as exc:
                        await _discard(conn)
                        conn = None
                        self.status.failed(str(pg.unavailable(self.settings, exc)))
                        if not reported:
                            log.warning("config store %s: change feed lost (%s); reconnecting", self.label, exc)
                            reported = True
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, BACKOFF_MAX_S)
                        continue
                    if reported:
                        log.info("config store %s: change feed reconnected", self.label)
                    backoff, reported = BACKOFF_MIN_S, False
                    # Notifications sent while we were away are lost: read once now (cheap when nothing changed).
                    new = await self.refresh()
                    if new is not None:
                        yield new
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.get(), SAFETY_INTERVAL_S)
                while not wake.empty():  # a burst of edits: one read
                    wake.get_nowait()
                if conn.is_closed():
                    continue
                new = await self.refresh()
                if new is not None:
                    yield new
        finally:
            await _discard(conn)


class StoreNotEmpty(Exception):
    """`import_document` found a document already stored (and was not told to replace it)."""

    def __init__(self, version: int) -> None:
        super().__init__(f"the config store already holds a document (version {version})")
        self.version = version


async def stored_version(settings: PostgresSettings) -> int | None:
    """The version of the document stored at `settings`, or None when there is none (no table, no row).
    Reads only: `bifrost migrate --dry-run`. Raises PostgresUnavailable."""
    conn = await pg.connect(settings)
    try:
        if await conn.fetchval("SELECT to_regclass('bifrost_config_document')") is None:
            return None
        version = await conn.fetchval("SELECT version FROM bifrost_config_document WHERE id = 1")
        return None if version is None else int(version)
    except _DOWN as exc:
        raise pg.unavailable(settings, exc) from None
    finally:
        await _discard(conn)


async def import_document(
    settings: PostgresSettings,
    document: Mapping[str, Any],
    *,
    encryption_key: str | None,
    seed_hash: str,
    force: bool = False,
) -> int:
    """Store `document` (bootstrap blocks removed, secrets sealed with `encryption_key`) as the store's
    document, with `seed_hash` the hash of the file the gateways will start with (so that file does not
    count as "edited" at their next start). Refuses (StoreNotEmpty) when a document is stored, unless `force`:
    then it becomes the next version and running gateways are notified. Returns the version written.
    Raises PostgresUnavailable, secrets.SecretsError (a key that does not match the store's)."""
    doc = strip_bootstrap(document)
    conn = await pg.connect(settings)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_LOCK_ID)
            await migrate(conn)
            cipher = await _key(conn, encryption_key, settings)
            current = await conn.fetchval("SELECT version FROM bifrost_config_document WHERE id = 1 FOR UPDATE")
            if current is not None and not force:
                raise StoreNotEmpty(int(current))
            version = 1 if current is None else int(current) + 1
            await conn.execute(
                "INSERT INTO bifrost_config_document (id, document, version, seed_hash) VALUES (1, $1::jsonb, $2, $3) "
                "ON CONFLICT (id) DO UPDATE SET document = EXCLUDED.document, version = EXCLUDED.version, "
                "seed_hash = EXCLUDED.seed_hash, updated_at = now()",
                json.dumps(secrets.seal(doc, cipher)),
                version,
                seed_hash,
            )
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(version))
        return version
    except _DOWN as exc:
        raise pg.unavailable(settings, exc) from None
    finally:
        await _discard(conn)


async def _discard(conn: asyncpg.Connection | None) -> None:
    """Close a LISTEN connection, bounded (a dead server is cut off)."""
    if conn is None or conn.is_closed():
        return
    try:
        await asyncio.wait_for(conn.close(), CLOSE_TIMEOUT_S)
    except _CLOSE_ERRORS:
        conn.terminate()


async def _close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_S)
    except _CLOSE_ERRORS:
        pool.terminate()


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Run the migrations not yet recorded (the caller holds the advisory lock); the ids it ran."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS bifrost_config_migrations ("
        "id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    done = {r["id"] for r in await conn.fetch("SELECT id FROM bifrost_config_migrations")}
    ran: list[int] = []
    for number, name, sql in MIGRATIONS:
        if number in done:
            continue
        await conn.execute(sql)
        await conn.execute("INSERT INTO bifrost_config_migrations (id, name) VALUES ($1, $2)", number, name)
        ran.append(number)
    return ran


async def _key(conn: asyncpg.Connection, passphrase: str | None, settings: PostgresSettings) -> secrets.Cipher | None:
    """The store's cipher: derived from `passphrase` and the stored salt, checked against the stored
    key-check value; the first keyed start stores a new salt and check. Raises SecretsError."""
    meta = {r["key"]: r["value"] for r in await conn.fetch("SELECT key, value FROM bifrost_config_meta")}
    if passphrase is None:
        if CHECK_KEY in meta:
            raise secrets.SecretsError(
                "the store's secrets are encrypted but no encryption_key is configured "
                "(set encryption_key in config.json or the BIFROST_ENCRYPTION_KEY environment variable)"
            )
        return None
    if SALT_KEY in meta and CHECK_KEY in meta:
        cipher = await secrets.open_cipher(passphrase, bytes.fromhex(meta[SALT_KEY]))
        if not hmac.compare_digest(cipher.check, meta[CHECK_KEY]):
            raise secrets.SecretsError(
                "the encryption_key does not match the key this store's secrets were encrypted with "
                "(once set, the encryption key cannot be changed)"
            )
        return cipher
    salt = secrets.new_salt()
    cipher = await secrets.open_cipher(passphrase, salt)
    await conn.executemany(
        "INSERT INTO bifrost_config_meta (key, value) VALUES ($1, $2) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        [(SALT_KEY, salt.hex()), (CHECK_KEY, cipher.check)],
    )
    log.info("config store %s: encryption key set up (a new salt)", settings.describe())
    return cipher


if TYPE_CHECKING:  # mypy holds the engine to the interface
    _engine: type[ConfigStore] = PostgresConfigStore

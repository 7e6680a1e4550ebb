"""`bifrost migrate`: copy the embedded stores of an app dir into the PostgreSQL stores of a cluster.

    bifrost migrate [--app-dir DIR] [--to FILE] [--force] [--dry-run]

Source: `<app-dir>/config.json` (its document, validated first) and `<app-dir>/logs.db` (every row).
Target: the `config_store` / `logs_store` blocks (type postgres) and `encryption_key` of FILE, by default the
app dir's config.json itself. The document is written without its bootstrap blocks, secrets encrypted with
the target's key, and recorded as seeded by FILE, so gateways started with FILE run it as it is. A config
store that already holds a document is left alone unless --force (then the copy is its next version and
running gateways pick it up). Log rows are copied in batches, idempotently by row id: running migrate
again copies no row twice. --dry-run connects and counts, and writes nothing.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from bifrost_cli import console
from bifrost_cli.commands.config import app_dir_option
from bifrost_cli.startup import app_dir_or_default
from runtime.config.load import ConfigError, load_gateway_config, read_config_file
from runtime.config.model import PostgresSettings
from runtime.config.stores import parse_stores

LOG_FILE = "logs.db"
READ_BATCH = 5000


def _log_rows(path: Path) -> Iterator[tuple[Any, ...]]:
    """logs.db's rows in `record.COLUMNS` order, oldest first, read in batches (read-only)."""
    from runtime.requestlog.record import COLUMNS

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        # A logs.db last opened by an older gateway lacks the columns added since (read-only here: it is not
        # migrated): those are NULL in its rows, as the gateway's own upgrade would leave them.
        have = {row[1] for row in db.execute("PRAGMA table_info(logs)")}
        select = ", ".join(c if c in have else "NULL" for c in COLUMNS)  # our column names, no input
        cursor = db.execute(f"SELECT {select} FROM logs ORDER BY rowid")
        while rows := cursor.fetchmany(READ_BATCH):
            yield from rows
    finally:
        db.close()


def _count_rows(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM logs").fetchone()[0])
    finally:
        db.close()


def _fail(message: str, code: int = 1) -> None:
    console.error(message)
    sys.exit(code)


@click.command("migrate")
@app_dir_option
@click.option(
    "--to",
    "target",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The config file naming the PostgreSQL stores (config_store / logs_store) [default: the app dir's "
    "config.json].",
)
@click.option("--force", is_flag=True, help="Replace a document the PostgreSQL config store already holds.")
@click.option("--dry-run", is_flag=True, help="Show what would be copied; write nothing.")
def migrate(app_dir: Path | None, target: Path | None, force: bool, dry_run: bool) -> None:
    """Copy config.json's document and logs.db's rows into the PostgreSQL stores of a cluster."""
    directory = app_dir_or_default(app_dir)
    target = target or directory / "config.json"
    try:
        target_raw = read_config_file(target)
        if target_raw is None:
            _fail(f"{target} does not exist: it must name the PostgreSQL stores (config_store / logs_store)")
        assert target_raw is not None
        stores = parse_stores(target_raw, os.environ, [])
        source = load_gateway_config(directory)  # validated: an invalid document is not copied
    except ConfigError as exc:
        _fail(f"invalid configuration: {exc}", 2)
        return
    if stores.config is None and stores.logs is None:
        _fail(f"{target} names no postgres config_store or logs_store: nothing to migrate to")
    logs_path = directory / LOG_FILE
    code = asyncio.run(
        _migrate(source.raw, target_raw, stores.config, stores.logs, stores.encryption_key, logs_path, force, dry_run)
    )
    sys.exit(code)


async def _migrate(
    document: Any,
    target_raw: dict[str, Any],
    config_settings: PostgresSettings | None,
    log_settings: PostgresSettings | None,
    encryption_key: str | None,
    logs_path: Path,
    force: bool,
    dry_run: bool,
) -> int:
    # Imported here: only this command (and a gateway on PostgreSQL) loads the driver.
    from runtime.stores import config_postgres, pg
    from runtime.stores.secrets import SecretsError

    prefix = "[dry run] " if dry_run else ""
    doc = config_postgres.strip_bootstrap(document)
    providers = len(doc.get("providers") or {})
    governance = doc.get("governance") if isinstance(doc.get("governance"), dict) else {}
    vks = len(governance.get("virtual_keys") or []) if isinstance(governance, dict) else 0
    status = 0
    if config_settings is not None:
        where = config_settings.describe()
        try:
            if dry_run:
                version = await config_postgres.stored_version(config_settings)
                state = "empty" if version is None else f"holds version {version}"
                action = "would copy" if version is None or force else "would NOT copy (use --force)"
                click.echo(
                    f"{prefix}config: {action} {providers} provider(s), {vks} virtual key(s) to {where} ({state})"
                )
            else:
                version = await config_postgres.import_document(
                    config_settings,
                    doc,
                    encryption_key=encryption_key,
                    seed_hash=config_postgres.document_hash(config_postgres.strip_bootstrap(target_raw)),
                    force=force,
                )
                click.echo(
                    f"config: copied {providers} provider(s), {vks} virtual key(s) to {where} (version {version})"
                )
                if encryption_key is None:
                    click.echo(
                        "warning: no encryption_key: provider keys and virtual keys are stored as plain text", err=True
                    )
        except config_postgres.StoreNotEmpty as exc:
            console.error(f"config: {where}: {exc}; nothing copied (--force replaces it)")
            status = 1
        except (pg.PostgresUnavailable, SecretsError) as exc:
            console.error(f"config: {exc}")
            return 1
    else:
        click.echo(f"{prefix}config: the target has no postgres config_store; config.json's document stays where it is")
    if log_settings is None:
        click.echo(f"{prefix}logs: the target has no postgres logs_store; {LOG_FILE} stays where it is")
        return status
    if not logs_path.exists():
        click.echo(f"{prefix}logs: no {LOG_FILE} in the app dir: nothing to copy")
        return status
    try:
        total = await asyncio.to_thread(_count_rows, logs_path)
    except sqlite3.Error as exc:
        console.error(f"logs: cannot read {logs_path}: {exc}")
        return 1
    where = log_settings.describe()
    if dry_run:
        click.echo(f"{prefix}logs: would copy up to {total} row(s) to {where} (rows already there are skipped)")
        return status
    from runtime.stores.logs_postgres import import_rows

    try:
        written = await import_rows(log_settings, _log_rows(logs_path), batch=READ_BATCH)
    except pg.PostgresUnavailable as exc:
        console.error(f"logs: {exc}")
        return 1
    except sqlite3.Error as exc:
        console.error(f"logs: cannot read {logs_path}: {exc}")
        return 1
    click.echo(f"logs: {total} row(s) read, {written} copied to {where}, {total - written} already there or skipped")
    return status

"""`bifrost migrate`: an embedded gateway's config edits and request log, copied into PostgreSQL, served by a
gateway on PostgreSQL; a second run copies no row twice; --dry-run writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from fakes import FakeOpenAI
from harness import Gateway, StartGateway, make_config, openai_provider
from harness.postgres import PostgresServer
from harness.process import REPO_ROOT, gateway_env

KEY_ENV = {"BIFROST_MIGRATE_KEY": "migrate test passphrase"}


def _api(gateway: Gateway, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(gateway.url(path), data=data, method=method)
    request.add_header("content-type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _migrate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bifrost_cli", "migrate", *args],
        capture_output=True,
        text=True,
        env=gateway_env(KEY_ENV),
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )


def _target(server: PostgresServer, db: str, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    block = {"enabled": True, "type": "postgres", "config": server.settings(db)}
    path.write_text(
        json.dumps({"config_store": block, "logs_store": block, "encryption_key": "env.BIFROST_MIGRATE_KEY"})
    )
    return path


def _chat(gateway: Gateway, text: str, vk: str | None = None) -> str:
    client = gateway.client(default_headers={"x-bf-vk": vk} if vk else None)
    try:
        answer = client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": text}]
        )
        return str(answer.headers["x-request-id"])
    finally:
        client.close()


def test_migrate_round_trip(
    postgres_server: PostgresServer,
    postgres_db: str,
    fake_openai: FakeOpenAI,
    start_gateway: StartGateway,
    tmp_path: Path,
) -> None:
    # An embedded gateway: config edits through the API, and a request log.
    embedded_dir = tmp_path / "embedded"
    embedded = start_gateway(make_config({"openai": openai_provider(fake_openai.url)}), app_dir=embedded_dir)
    status, created = _api(embedded, "POST", "/api/governance/virtual-keys", {"id": "team-a", "name": "team a"})
    assert status == 201, created
    vk_value = created["virtual_key"]["value"]
    status, _ = _api(embedded, "PUT", "/api/client", {"max_request_body_size_mb": 7})
    assert status == 200
    ids = {_chat(embedded, f"message {i}", vk_value if i % 2 else None) for i in range(5)}
    embedded.log.wait_rows(5)
    assert embedded.stop() == 0

    target = _target(postgres_server, postgres_db, tmp_path / "cluster")
    dry = _migrate("--app-dir", str(embedded_dir), "--to", str(target), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would copy" in dry.stdout and "up to 5 row(s)" in dry.stdout
    assert postgres_server.psql("SELECT to_regclass('bifrost_config_document') IS NULL", postgres_db) == "t"

    first = _migrate("--app-dir", str(embedded_dir), "--to", str(target))
    assert first.returncode == 0, first.stderr
    assert "config: copied 1 provider(s), 1 virtual key(s)" in first.stdout
    assert "5 row(s) read, 5 copied" in first.stdout
    # Run again: the config store is not overwritten without --force, and no log row is copied twice.
    second = _migrate("--app-dir", str(embedded_dir), "--to", str(target))
    assert second.returncode == 1 and "already holds a document (version 1)" in second.stderr
    assert "5 row(s) read, 0 copied" in second.stdout
    forced = _migrate("--app-dir", str(embedded_dir), "--to", str(target), "--force")
    assert forced.returncode == 0 and "(version 2)" in forced.stdout, forced.stderr
    assert postgres_server.psql("SELECT count(*) FROM bifrost_logs", postgres_db) == "5"
    document = postgres_server.psql("SELECT document::text FROM bifrost_config_document", postgres_db)
    assert '"value": "sk-fake-1"' not in document and '"value": "enc:v1:' in document  # encrypted at rest

    # A gateway on PostgreSQL, started with the target file, serves what the embedded one had.
    cluster = start_gateway(target.read_text(), env=KEY_ENV, app_dir=tmp_path / "cluster")
    status, providers = _api(cluster, "GET", "/api/providers")
    assert status == 200 and "openai" in {p["name"] for p in providers["providers"]}
    status, keys = _api(cluster, "GET", "/api/governance/virtual-keys")
    assert status == 200 and [k["id"] for k in keys["virtual_keys"]] == ["team-a"]
    assert _api(cluster, "GET", "/api/client")[1]["max_request_body_size_mb"] == 7
    assert _chat(cluster, "after the move", vk_value)  # the migrated key and the virtual key still work
    status, logs = _api(cluster, "GET", "/api/logs?limit=100")
    assert status == 200, logs
    assert ids <= {item["id"] for item in logs["items"]}


def test_migrate_needs_a_postgres_target(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "config.json").write_text(json.dumps({"providers": {}}))
    done = _migrate("--app-dir", str(tmp_path / "app"))
    assert done.returncode == 1 and "names no postgres config_store or logs_store" in done.stderr


def test_config_validate_does_not_connect(tmp_path: Path) -> None:
    """`bifrost config validate` only parses: a config store that cannot be reached is still a valid file."""
    from harness.process import free_port

    settings = {"host": "127.0.0.1", "port": str(free_port()), "user": "bifrost", "password": ""}
    settings.update(db_name="bifrost", ssl_mode="disable")
    (tmp_path / "config.json").write_text(
        json.dumps({"config_store": {"enabled": True, "type": "postgres", "config": settings}})
    )
    done = subprocess.run(
        [sys.executable, "-m", "bifrost_cli", "config", "validate", "--app-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=gateway_env(),
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and "is valid" in done.stdout, done.stderr
    assert "asyncpg" not in done.stderr

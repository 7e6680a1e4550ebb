#!/usr/bin/env bash
# Install everything the full test suite needs into ./.venv, then run it (ruff + pytest).
# This is the README's test command and what CI runs (.ci/run). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
# System packages: Chromium for the UI tests (Playwright drives Debian's build; its own download
# cannot work offline); redis-server for the Redis tests (tests/harness/redis.py starts one
# in a temp dir on loopback); postgresql and nginx for the cluster-mode tests. Root installs what is
# missing; otherwise the tests that need a server fail saying which package to install.
missing=()
for pair in chromium:chromium redis-server:redis-server nginx:nginx; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || missing+=("${pair#*:}")
done
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)  # not on PATH in Debian
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing ${missing[*]} (apt)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
echo "== installing bifrost-gateway with test and build extras"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,build]'

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "== mypy"
.venv/bin/mypy

echo "== pytest"
exec .venv/bin/python -m pytest "$@"

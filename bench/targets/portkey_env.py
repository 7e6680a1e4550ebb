"""Portkey's open-source gateway (``@portkey-ai/gateway`` from npm) under bench/.venvs/portkey (git-ignored).

The npm tarball of 1.15.2 ships no lockfile, and a plain ``npm install`` of it today resolves its
caret ranges to releases that break its streaming: from ``@hono/node-server`` 1.14 on, the adapter's
``Response`` keeps the immutable headers of the upstream ``fetch`` response, so the gateway's own
``headers.append`` on every streamed answer throws ("immutable") and the client gets a 500 instead
of SSE.  So the suite installs from a ``package.json`` it writes itself:

* every direct dependency of 1.15.2 pinned exactly (npm ``overrides``) to the floor of the range
  that release declares, i.e. the version its ``package.json`` was bumped to; ``@hono/node-server``
  (declared ``^1.3.3``) to 1.13.8, the last release that copies the headers;
* every transitive dependency resolved as the registry stood when 1.15.2 was published
  (``npm install --before``), so a later install resolves the same tree.

The installed versions are read back from node_modules and recorded in each cell's notes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from bench.mockproc import REPO_ROOT
from bench.targets.base import TargetUnavailable

PACKAGE = "@portkey-ai/gateway"
VERSION = "1.15.2"
# npm's publish time of @portkey-ai/gateway@1.15.2 is 2026-08-23T01:29:47.164Z; one second later.
PUBLISHED_BEFORE = "2026-08-23T01:29:48Z"
# Exact versions for the release's direct dependencies (its package.json ranges' floors; see above).
PINS: dict[str, str] = {
    "@aws-crypto/sha256-js": "5.2.0",
    "@cfworker/json-schema": "4.0.3",
    "@hono/node-server": "1.13.8",
    "@hono/node-ws": "1.2.0",
    "@portkey-ai/mustache": "2.1.3",
    "@smithy/signature-v4": "2.1.1",
    "@types/mustache": "4.2.5",
    "async-retry": "1.3.3",
    "avsc": "5.7.7",
    "hono": "4.9.7",
    "ioredis": "5.8.0",
    "jose": "6.0.11",
    "patch-package": "8.0.1",
    "ws": "8.18.0",
    "zod": "3.22.4",
}
DIR = os.path.join(REPO_ROOT, "bench", ".venvs", "portkey")
START_SCRIPT = os.path.join(DIR, "node_modules", "@portkey-ai", "gateway", "build", "start-server.js")
SPEC_FILE = os.path.join(DIR, "package.json")


def package_json() -> dict[str, object]:
    """The ``package.json`` the suite installs from (the gateway plus every pin)."""
    return {
        "name": "bench-portkey",
        "private": True,
        "description": "Portkey's gateway for the Bifrost bench (written by bench/targets/portkey_env.py)",
        "dependencies": {PACKAGE: VERSION},
        "overrides": dict(sorted(PINS.items())),
    }


def npm_install_command(npm: str = "npm") -> list[str]:
    """``npm install`` as the suite runs it in ``DIR`` (no lifecycle scripts: the tarball ships no patches)."""
    return [
        npm,
        "install",
        f"--before={PUBLISHED_BEFORE}",
        "--omit=dev",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
    ]


def _read_spec() -> object:
    try:
        with open(SPEC_FILE) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def installed() -> bool:
    """Installed here, from exactly the spec this checkout pins (a changed pin means a reinstall)."""
    return os.path.isfile(START_SCRIPT) and _read_spec() == package_json()


def installed_versions() -> dict[str, str]:
    """What node_modules holds for the gateway and its pinned dependencies (missing ones left out)."""
    out: dict[str, str] = {}
    for name in (PACKAGE, *PINS):
        path = os.path.join(DIR, "node_modules", *name.split("/"), "package.json")
        try:
            with open(path) as fh:
                out[name] = str(json.load(fh)["version"])
        except (OSError, ValueError, KeyError):
            continue
    return out


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise TargetUnavailable("portkey: no `node` on PATH (Portkey's gateway is a Node.js program)")
    return node


def ensure(auto_install: bool = True) -> str:
    """Path to the gateway's ``start-server.js``, installing the pinned tree into ``DIR`` first if needed."""
    node_binary()
    if installed():
        return START_SCRIPT
    if not auto_install:
        raise TargetUnavailable(f"portkey: not installed in {DIR} (run `python -m bench install-portkey`)")
    npm = shutil.which("npm")
    if npm is None:
        raise TargetUnavailable("portkey: no `npm` on PATH to install @portkey-ai/gateway with")
    print(f"bench: installing {PACKAGE}@{VERSION} (pinned tree) into {DIR}", file=sys.stderr, flush=True)
    os.makedirs(DIR, exist_ok=True)
    for stale in ("node_modules", "package-lock.json"):
        path = os.path.join(DIR, stale)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    with open(SPEC_FILE, "w") as fh:
        json.dump(package_json(), fh, indent=2)
        fh.write("\n")
    try:
        subprocess.run(npm_install_command(npm), cwd=DIR, check=True, timeout=900)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        os.remove(SPEC_FILE)  # not installed: the next run tries again
        raise TargetUnavailable(f"portkey: npm install failed: {exc}") from None
    got = installed_versions()
    wrong = {k: got.get(k) for k, v in {PACKAGE: VERSION, **PINS}.items() if got.get(k) != v}
    if wrong or not os.path.isfile(START_SCRIPT):
        os.remove(SPEC_FILE)
        raise TargetUnavailable(f"portkey: installed tree does not match the pins: {wrong}")
    return START_SCRIPT

#!/usr/bin/env node
// Copy a PyInstaller one-dir build (dist/bifrost) into its per-platform npm package, ready for
// `npm pack` / `npm publish`:
//
//   node npm/stage.mjs                          # dist/bifrost -> npm/platforms/<this platform>
//   node npm/stage.mjs --dist path/to/bifrost --platform linux-arm64
//
// The build lands in npm/platforms/<platform>/bin/bifrost-dist/ (git-ignored). The script also
// checks that the platform package's version is the one the launcher pins, because a mismatch
// makes npm fetch another version from the registry instead of the staged one.
import { chmodSync, cpSync, existsSync, readFileSync, rmSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..");

const { values } = parseArgs({
  options: {
    dist: { type: "string", default: join(repo, "dist", "bifrost") },
    platform: { type: "string", default: `${process.platform}-${process.arch}` },
  },
});

function die(message) {
  console.error(`stage: ${message}`);
  process.exit(1);
}

const dist = resolve(values.dist);
const executable = values.platform.startsWith("win32") ? "bifrost.exe" : "bifrost";
if (!existsSync(join(dist, executable))) die(`no ${executable} in ${dist}; run packaging/build.sh first`);

const pkgDir = join(here, "platforms", values.platform);
const pkgJson = join(pkgDir, "package.json");
if (!existsSync(pkgJson)) die(`no platform package ${pkgDir}`);
const pkg = JSON.parse(readFileSync(pkgJson, "utf8"));
const launcher = JSON.parse(readFileSync(join(here, "bifrost", "package.json"), "utf8"));
const pinned = launcher.optionalDependencies?.[pkg.name];
if (pinned !== pkg.version) die(`${pkg.name} is ${pkg.version} but @maximhq/bifrost pins ${pinned}`);

const target = join(pkgDir, "bin", "bifrost-dist");
rmSync(target, { recursive: true, force: true });
// dereference: a one-dir build may contain symlinks (macOS frameworks); npm pack drops symlinks.
cpSync(dist, target, { recursive: true, dereference: true });
if (executable === "bifrost") chmodSync(join(target, executable), 0o755);

const mb = (statSync(join(target, executable)).size / 1e6).toFixed(1);
console.log(`staged ${dist} -> ${target} (${pkg.name}@${pkg.version}, gateway executable ${mb} MB)`);

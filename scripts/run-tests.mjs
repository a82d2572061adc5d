#!/usr/bin/env node
// Runs every *.spec.ts under test/ and src/ with node:test, listing the files
// explicitly (`node --test <dir>` can silently find none). A run that finds no
// test files fails. Arguments filter the list: `node scripts/run-tests.mjs
// freeze ledger` runs the specs whose path (e.g. test/freeze.spec.ts) contains
// "freeze" or "ledger".
//
// `npm test` first type-checks and emits JavaScript to .build/ (not dist/,
// which test/package.spec.ts's `npm pack` rebuilds meanwhile). While .build/ is
// fresh (every .ts under src/, gen/, test/ and scripts/ has its .js there,
// written after the .ts last changed), the specs run compiled, from
// .build/test/**/*.spec.js and .build/src/**/*.spec.js, without tsx: loading a
// spec through tsx costs about 1.2 s of CPU against 0.4 s compiled. The list is
// still taken from the .spec.ts sources, so a stale .js of a deleted spec never
// runs. Otherwise (no build, or a source edited since; e.g. this script run by
// itself) the specs run from source through tsx, as before, and say so. The
// servers and CLIs the specs spawn follow the same rule (test/support/entry.ts).
// Specs find fixtures (test/vectors/, test/python/, ...) from the package root
// (packageRoot in src/version.ts), never from their own file, so both work.
//
// --test-timeout ends a test that hangs (an endless loop, a promise that never
// settles while a handle keeps the process alive) instead of the whole run
// waiting for ever. Under Node 20 each file runs in its own process and the
// timeout bounds that file's run as a whole as well as each of its tests, so
// it must be above the slowest file, not only the slowest test: freeze.spec.ts
// takes about 51 s and pg-faults.spec.ts about 29 s alone on two shared cores
// (the slowest test, 17 s, is in freeze.spec.ts). 300 s leaves room for
// --test-concurrency=2 on a loaded machine; OPENEXEC_TEST_TIMEOUT_MS overrides it.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;

function specFiles(dir) {
  let out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out = out.concat(specFiles(path));
    else if (entry.name.endsWith(".spec.ts")) out.push(relative(root, path));
  }
  return out;
}

const buildDir = join(root, ".build");

/** The .js that `tsc --outDir .build` emits for `file` (relative to the root). */
function compiledPath(file) {
  return join(".build", file).replace(/\.ts$/, ".js");
}

/** Whether every .ts under `dir` (not .d.ts; only its own files unless `deep`) has a newer .js in .build/. */
function treeIsFresh(dir, deep = true) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (deep && !treeIsFresh(path)) return false;
    } else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) {
      const compiled = join(root, compiledPath(relative(root, path)));
      if (!existsSync(compiled) || statSync(compiled).mtimeMs < statSync(path).mtimeMs) return false;
    }
  }
  return true;
}

const compiled =
  existsSync(buildDir) &&
  ["src", "gen", "test"].every((dir) => treeIsFresh(join(root, dir))) &&
  treeIsFresh(join(root, "scripts"), false);
if (!compiled) {
  console.error("run-tests: .build/ is missing or older than the sources; running the specs through tsx");
}

const timeoutMs = process.env.OPENEXEC_TEST_TIMEOUT_MS ?? "300000";
if (!/^[1-9]\d*$/.test(timeoutMs)) {
  console.error("run-tests: OPENEXEC_TEST_TIMEOUT_MS must be a positive number of milliseconds");
  process.exit(1);
}
const filter = process.argv.slice(2);
const files = ["test", "src"]
  .flatMap((dir) => specFiles(join(root, dir)))
  .filter((file) => filter.length === 0 || filter.some((f) => file.includes(f)))
  .sort();
if (files.length === 0) {
  console.error("run-tests: no test files found");
  process.exit(1);
}
const result = spawnSync(
  process.execPath,
  [
    ...(compiled ? [] : ["--import", "tsx"]),
    "--test",
    "--test-reporter=spec",
    "--test-concurrency=2",
    `--test-timeout=${timeoutMs}`,
    ...(compiled ? files.map(compiledPath) : files),
  ],
  { cwd: root, stdio: "inherit" },
);
process.exit(result.status ?? 1);

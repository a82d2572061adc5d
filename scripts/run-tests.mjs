#!/usr/bin/env node
// Runs every *.spec.ts under test/ and src/ with node:test, listing the files
// explicitly (`node --test <dir>` can silently find none). A run that finds no
// test files fails.
//
// `npm test` first type-checks and emits JavaScript to .build/ (not dist/,
// which test/package.spec.ts's `npm pack` rebuilds meanwhile); the specs still
// run through tsx, but the servers and CLIs they spawn run from .build/ while
// it is up to date (test/support/entry.ts), saving tsx's start-up per child.
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
import { readdirSync } from "node:fs";
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
    "--import",
    "tsx",
    "--test",
    "--test-reporter=spec",
    "--test-concurrency=2",
    `--test-timeout=${timeoutMs}`,
    ...files,
  ],
  { cwd: root, stdio: "inherit" },
);
process.exit(result.status ?? 1);

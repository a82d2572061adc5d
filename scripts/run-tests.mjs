#!/usr/bin/env node
// Runs every *.spec.ts under test/ and src/ with node:test, listing the files
// explicitly (`node --test <dir>` can silently find none). A run that finds no
// test files fails.
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
  ["--import", "tsx", "--test", "--test-reporter=spec", "--test-concurrency=2", ...files],
  { cwd: root, stdio: "inherit" },
);
process.exit(result.status ?? 1);

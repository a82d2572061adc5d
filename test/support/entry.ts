// How tests start this repository's TypeScript entry points (src/cli/main.ts,
// test/support/replica-main.ts) in child processes.
//
// `npm test` type-checks and emits JavaScript for src/, gen/ and test/ into
// .build/ first (not dist/: test/package.spec.ts runs `npm pack`, whose prepare
// script empties and rebuilds dist/ while other specs run). A child started
// from .build/ skips tsx's start-up and on-the-fly compilation (about 1-2 s of
// CPU per spawn, and again for the ledger's worker thread).
//
// The compiled entry is used only while .build/ is up to date: every .ts under
// src/, gen/ and test/support/ has its .js in .build/, written after the .ts was
// last changed. Otherwise (a spec run alone, `node --import tsx --test
// test/x.spec.ts`, with no build or after an edit) children run the sources
// through tsx, as before. Nothing is built on demand.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { packageRoot } from "../../src/version.js";

/** tsx, resolved here so that child processes can run from any working directory. */
const tsx = import.meta.resolve("tsx");

/** Where `npm test` emits JavaScript (tsconfig.json's rootDir is the package root). */
export const buildDir = join(packageRoot, ".build");

const compiledTrees = ["src", "gen", "test/support"];

let fresh: boolean | undefined;

/** Whether .build/ holds JavaScript at least as new as every source a spawned entry point may load. */
export function buildIsFresh(): boolean {
  fresh ??= compiledTrees.every((tree) => treeIsFresh(join(packageRoot, tree)));
  return fresh;
}

function treeIsFresh(dir: string): boolean {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!treeIsFresh(path)) return false;
    } else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts") && !entry.name.endsWith(".spec.ts")) {
      const compiled = join(buildDir, relative(packageRoot, path)).replace(/\.ts$/, ".js");
      if (!existsSync(compiled) || statSync(compiled).mtimeMs < statSync(path).mtimeMs) return false;
    }
  }
  return true;
}

/**
 * The `node` arguments that run `source` (an absolute path to a .ts file in
 * this package): its compiled .js in .build/ when the build is fresh, else
 * the source through tsx.
 */
export function nodeArgsFor(source: string): string[] {
  if (buildIsFresh()) return [join(buildDir, relative(packageRoot, source)).replace(/\.ts$/, ".js")];
  return ["--import", tsx, source];
}

// The layering check (issue 17): no import cycle between files under src/,
// and none between its top-level folders (a top-level file such as
// src/server.ts is its own node). It reads every `import`, `export … from`,
// `import type` and `import("…")` with the TypeScript scanner: a type-only
// import still couples two modules (a change to the type ripples through
// both, and the two can no longer be read or reused apart), so it counts.
// Only relative specifiers are followed (`./x.js` resolves to `./x.ts`);
// packages and gen/ (generated, imports nothing of src/) are leaves.
//
// `node --import tsx scripts/layers.ts` prints any cycle and exits 1;
// test/layers.spec.ts runs the same check in `npm test`.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import ts from "typescript";
import { packageRoot } from "../src/version.js";

/** Each file (path relative to the root, `/`-separated) and the files under `dir` it imports. */
export type ImportGraph = Map<string, Set<string>>;

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (/\.(ts|tsx|mts|cts)$/.test(entry.name) && !entry.name.endsWith(".d.ts")) out.push(path);
  }
  return out;
}

function resolveRelative(fromFile: string, specifier: string): string | undefined {
  const base = resolve(dirname(fromFile), specifier);
  const candidates = [
    base.replace(/\.js$/, ".ts"),
    base.replace(/\.js$/, ".tsx"),
    base.replace(/\.mjs$/, ".mts"),
    base.replace(/\.cjs$/, ".cts"),
    base,
    `${base}.ts`,
    join(base, "index.ts"),
  ];
  return candidates.find((c) => existsSync(c) && statSync(c).isFile());
}

/** The specifiers a file imports or re-exports from, type-only and dynamic ones included. */
export function importSpecifiers(text: string): string[] {
  const info = ts.preProcessFile(text, true, true);
  return info.importedFiles.map((f) => f.fileName);
}

/** The import graph of the files under `dir` (relative to `root`), keeping only edges that stay under `dir`. */
export function importGraph(root: string, dir = "src"): ImportGraph {
  const top = resolve(root, dir);
  const name = (abs: string) => relative(root, abs).split(sep).join("/");
  const graph: ImportGraph = new Map();
  for (const file of sourceFiles(top).sort()) {
    const edges = new Set<string>();
    for (const specifier of importSpecifiers(readFileSync(file, "utf8"))) {
      if (!specifier.startsWith(".")) continue;
      const target = resolveRelative(file, specifier);
      if (target === undefined || !(target + sep).startsWith(top + sep) || target === file) {
        if (target === file) edges.add(name(file));
        continue;
      }
      edges.add(name(target));
    }
    graph.set(name(file), edges);
  }
  return graph;
}

/** The graph between top-level nodes of `dir`: `src/ledger` for anything under src/ledger/, `src/server.ts` for itself. */
export function folderGraph(files: ImportGraph, dir = "src"): ImportGraph {
  const prefix = `${dir.replace(/\/$/, "")}/`;
  const nodeOf = (file: string) => {
    const rest = file.startsWith(prefix) ? file.slice(prefix.length) : file;
    const first = rest.split("/")[0] ?? rest;
    return prefix + first;
  };
  const graph: ImportGraph = new Map();
  for (const [file, targets] of files) {
    const from = nodeOf(file);
    const edges = graph.get(from) ?? new Set<string>();
    graph.set(from, edges);
    for (const target of targets) {
      const to = nodeOf(target);
      if (to !== from) edges.add(to);
    }
  }
  return graph;
}

/**
 * One cycle (as a closed path `a → b → … → a`) per strongly connected
 * component that has one, found with Tarjan's algorithm; sorted, so the
 * output is stable.
 */
export function findCycles(graph: ImportGraph): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  const nodes = [...graph.keys()].sort();
  const strongConnect = (v: string) => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const w of [...(graph.get(v) ?? [])].sort()) {
      if (!index.has(w)) {
        strongConnect(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      components.push(component);
    }
  };
  for (const v of nodes) if (!index.has(v)) strongConnect(v);

  const cycles: string[][] = [];
  for (const component of components) {
    const members = new Set(component);
    const start = [...component].sort()[0] as string;
    if (component.length === 1 && !graph.get(start)?.has(start)) continue;
    // The shortest way back to `start` inside the component (breadth first).
    const previous = new Map<string, string>();
    const queue = [start];
    let found = false;
    while (queue.length > 0 && !found) {
      const v = queue.shift() as string;
      for (const w of [...(graph.get(v) ?? [])].sort()) {
        if (!members.has(w)) continue;
        if (w === start) {
          previous.set(start, v);
          found = true;
          break;
        }
        if (!previous.has(w)) {
          previous.set(w, v);
          queue.push(w);
        }
      }
    }
    const path = [start];
    for (let v = previous.get(start) as string; v !== start; v = previous.get(v) as string) path.unshift(v);
    path.unshift(start);
    cycles.push(path);
  }
  return cycles.sort((a, b) => (a[0] as string).localeCompare(b[0] as string));
}

export interface LayerReport {
  readonly fileCycles: string[][];
  readonly folderCycles: string[][];
  /** For each folder cycle, one file import behind each of its steps (`from → to`). */
  readonly folderWitnesses: string[][];
}

export function checkLayers(root: string, dir = "src"): LayerReport {
  const files = importGraph(root, dir);
  const folderCycles = findCycles(folderGraph(files, dir));
  const inNode = (file: string, node: string) => file === node || file.startsWith(`${node}/`);
  const folderWitnesses = folderCycles.map((cycle) =>
    cycle.slice(1).map((to, i) => {
      const from = cycle[i] as string;
      for (const [file, targets] of files) {
        if (!inNode(file, from)) continue;
        const target = [...targets].find((t) => inNode(t, to));
        if (target !== undefined) return `${file} → ${target}`;
      }
      return `${from} → ${to}`;
    }),
  );
  return { fileCycles: findCycles(files), folderCycles, folderWitnesses };
}

export function formatReport(report: LayerReport): string {
  const lines: string[] = [];
  for (const cycle of report.fileCycles) lines.push(`file cycle: ${cycle.join(" → ")}`);
  report.folderCycles.forEach((cycle, i) => {
    lines.push(`folder cycle: ${cycle.join(" → ")}`);
    for (const step of report.folderWitnesses[i] ?? []) lines.push(`  ${step}`);
  });
  return lines.join("\n");
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) {
  // packageRoot, not this file's parent: compiled, this runs from .build/scripts/.
  const report = checkLayers(packageRoot);
  const text = formatReport(report);
  if (text !== "") {
    console.error(text);
    process.exit(1);
  }
  console.log("layers: no import cycles under src/");
}

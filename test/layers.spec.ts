import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";
import { checkLayers, formatReport, importSpecifiers } from "../scripts/layers.js";
import { packageRoot } from "../src/version.js";

const fixtures = mkdtempSync(join(tmpdir(), "openexec-layers-"));
after(() => rmSync(fixtures, { recursive: true, force: true }));

/** A throwaway tree of files (path → text) under its own root; returns the root. */
function tree(name: string, files: Record<string, string>): string {
  const root = join(fixtures, name);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

describe("layers", () => {
  it("src/ has no import cycle, between files or between top-level folders", () => {
    const report = checkLayers(packageRoot);
    const text = formatReport(report);
    assert.equal(text, "", `import cycles under src/ (STYLE.md: the folders depend one way):\n${text}`);
  });
});

describe("layers check", () => {
  it("reads imports, type-only imports, re-exports and dynamic imports", () => {
    const text = [
      'import { a } from "./a.js";',
      'import type { B } from "../b/b.js";',
      'export { c } from "./c.js";',
      'export type * from "./d.js";',
      'const e = await import("./e.js");',
      'import "node:fs";',
    ].join("\n");
    assert.deepEqual(importSpecifiers(text), ["./a.js", "../b/b.js", "./c.js", "./d.js", "./e.js", "node:fs"]);
  });

  it("reports two files that import each other, with the path chain", () => {
    const root = tree("file-cycle", {
      "src/a/one.ts": 'import { two } from "./two.js";\nexport const one = () => two;\n',
      "src/a/two.ts": 'import type { one } from "./one.js";\nexport const two: typeof one | 2 = 2;\n',
    });
    const report = checkLayers(root);
    assert.deepEqual(report.fileCycles, [["src/a/one.ts", "src/a/two.ts", "src/a/one.ts"]]);
    assert.deepEqual(report.folderCycles, []);
    assert.match(formatReport(report), /file cycle: src\/a\/one\.ts → src\/a\/two\.ts → src\/a\/one\.ts/);
  });

  it("reports a cycle between folders (a top-level file is its own node) and the imports behind it", () => {
    const root = tree("folder-cycle", {
      "src/low/leaf.ts": 'import { top } from "../main.js";\nexport const leaf = top;\n',
      "src/main.ts": 'import { mid } from "./mid/mid.js";\nexport const top = 1;\nexport { mid };\n',
      "src/mid/mid.ts": 'export { leaf as mid } from "../low/leaf.js";\n',
      "gen/x_pb.ts": 'import { leaf } from "../src/low/leaf.js";\nexport const x = leaf;\n',
    });
    const report = checkLayers(root);
    assert.deepEqual(report.folderCycles, [["src/low", "src/main.ts", "src/mid", "src/low"]]);
    assert.deepEqual(report.folderWitnesses, [
      ["src/low/leaf.ts → src/main.ts", "src/main.ts → src/mid/mid.ts", "src/mid/mid.ts → src/low/leaf.ts"],
    ]);
    // Each file imports a file in another folder: no file imports itself back directly,
    // but the three files still form one cycle.
    assert.deepEqual(report.fileCycles, [["src/low/leaf.ts", "src/main.ts", "src/mid/mid.ts", "src/low/leaf.ts"]]);
  });

  it("passes a tree that depends one way, whatever it imports from gen/ or packages", () => {
    const root = tree("one-way", {
      "src/a/a.ts": 'import { b } from "../b/b.js";\nimport { x } from "../../gen/x_pb.js";\nexport const a = b + x;\n',
      "src/b/b.ts": 'import { readFileSync } from "node:fs";\nexport const b = readFileSync.length;\n',
      "gen/x_pb.ts": "export const x = 1;\n",
    });
    assert.equal(formatReport(checkLayers(root)), "");
  });
});

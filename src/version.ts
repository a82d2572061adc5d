import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The package root: the nearest folder above this module with a package.json (src/ or dist/src/). */
export const packageRoot: string = findPackageRoot(dirname(fileURLToPath(import.meta.url)));

/** The package version, read once at start. */
export const openexecVersion: string = (
  JSON.parse(readFileSync(join(packageRoot, "package.json"), "utf8")) as { version: string }
).version;

/** The protobuf package this build serves. */
export const apiPackage = "openexec.v1";

function findPackageRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${start}`);
  }
}

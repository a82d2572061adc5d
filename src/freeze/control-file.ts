import {
  closeSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { isValidScope, maxReasonLength } from "./freeze-scope.js";

/**
 * How `openexec freeze` reaches a running server on a SQLite ledger, which
 * holds its file exclusively: a mailbox beside the ledger, `<db>.freeze.json`
 * (mode 0600), holding the commands not yet applied. The server takes the file
 * about once a second (and at start), applies each command to the freezes
 * table of its ledger, in order, and removes it. The ledger stays the one
 * record of what is frozen; the file only carries commands to it.
 */
export type FreezeCommand =
  | { readonly op: "freeze"; readonly scope: string; readonly reason: string; readonly frozenAtMs: number }
  | { readonly op: "unfreeze"; readonly scope: string };

export function controlFilePath(ledgerPath: string): string {
  return `${ledgerPath}.freeze.json`;
}

/**
 * Adds a command to the mailbox: written beside it and renamed over it, so
 * the server never reads half a file.
 */
export function postCommand(path: string, command: FreezeCommand): void {
  const queued = readCommands(path) ?? [];
  const scratch = `${path}.${process.pid}.tmp`;
  // Created anew, so that it is 0600 even where a crashed run left one with another mode.
  rmSync(scratch, { force: true });
  const fd = openSync(scratch, "wx", 0o600);
  try {
    writeSync(fd, JSON.stringify([...queued, command]));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(scratch, path);
}

/** Whether the mailbox still holds commands (the server has not taken them yet). */
export function hasCommands(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Takes the commands from the mailbox: renamed away first, so that a command
 * posted meanwhile lands in a new file, never in one being removed. Throws
 * when the file is unsafe (writable by group or others, someone else's: it is
 * left where it is) or malformed (it is removed: it would never parse).
 */
export function takeCommands(path: string): FreezeCommand[] {
  let stats: ReturnType<typeof statSync>;
  try {
    stats = statSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  if ((stats.mode & 0o022) !== 0 || (process.getuid !== undefined && stats.uid !== process.getuid())) {
    throw new Error(`${path} is writable by group or others, or not owned by this user: not applied`);
  }
  const taken = `${path}.taken`;
  renameSync(path, taken);
  try {
    return readCommands(taken) ?? [];
  } finally {
    unlinkSync(taken);
  }
}

function readCommands(path: string): FreezeCommand[] | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  const parsed: unknown = JSON.parse(text);
  if (!Array.isArray(parsed) || !parsed.every(isCommand)) throw new Error(`${path} does not hold freeze commands`);
  return parsed;
}

function isCommand(value: unknown): value is FreezeCommand {
  if (typeof value !== "object" || value === null) return false;
  const c = value as Record<string, unknown>;
  if (typeof c.scope !== "string" || !isValidScope(c.scope)) return false;
  if (c.op === "unfreeze") return true;
  return (
    c.op === "freeze" &&
    typeof c.reason === "string" &&
    c.reason.length > 0 &&
    c.reason.length <= maxReasonLength &&
    Number.isSafeInteger(c.frozenAtMs)
  );
}

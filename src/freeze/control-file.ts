import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  lstatSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  type Stats,
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
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The most of a control file that is read: a queue of commands is a few
 * hundred bytes each (a reason is at most 500 characters), so 64 KiB holds
 * about a hundred; a larger file is refused unread.
 */
export const maxControlFileBytes = 64 * 1024;

/** Why a control file was not applied (logged as `problem`; never its contents). */
export type ControlFileProblem =
  | "not_regular_file" // a symbolic link, FIFO, socket, device or directory
  | "unsafe" // writable by group or others, or owned by another user
  | "too_large" // over maxControlFileBytes
  | "malformed"; // not a JSON array of freeze commands

export class ControlFileError extends Error {
  override readonly name = "ControlFileError";
  readonly problem: ControlFileProblem;

  constructor(problem: ControlFileProblem, message: string) {
    super(message);
    this.problem = problem;
  }
}

export function isControlFileError(error: unknown): error is ControlFileError {
  return error instanceof ControlFileError;
}

/**
 * Takes the commands from the mailbox: renamed away first, so that a command
 * posted meanwhile lands in a new file, never in one being removed. Never
 * blocks and never follows a link: it must run on the server's main thread.
 * Throws a ControlFileError when the file is not a regular file (a symbolic
 * link, a FIFO, …), unsafe (writable by group or others, someone else's) or
 * over maxControlFileBytes (it is left where it is, unread), or malformed (it
 * is removed: it would never parse).
 */
export function takeCommands(path: string): FreezeCommand[] {
  // lstat: it neither follows a link nor opens (a FIFO opened for reading blocks until a writer comes).
  let stats: Stats;
  try {
    stats = lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  checkStats(path, stats);
  const taken = `${path}.taken`;
  renameSync(path, taken);
  try {
    // What was renamed may not be what was checked (replaced meanwhile): the open file is checked again.
    return readCommands(taken) ?? [];
  } finally {
    unlinkSync(taken);
  }
}

function checkStats(path: string, stats: Stats): void {
  if (!stats.isFile()) throw new ControlFileError("not_regular_file", `${path} is not a regular file: not applied`);
  if ((stats.mode & 0o022) !== 0 || (process.getuid !== undefined && stats.uid !== process.getuid())) {
    throw new ControlFileError(
      "unsafe",
      `${path} is writable by group or others, or not owned by this user: not applied`,
    );
  }
  if (stats.size > maxControlFileBytes) {
    throw new ControlFileError("too_large", `${path} is over ${maxControlFileBytes} bytes: not applied`);
  }
}

/**
 * The commands of the file at `path` (undefined if there is none): opened
 * without following a link and without blocking, checked on the open file
 * (checkStats) and read up to the cap.
 */
function readCommands(path: string): FreezeCommand[] | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    // O_NOFOLLOW on a link fails with ELOOP.
    if (code === "ELOOP") throw new ControlFileError("not_regular_file", `${path} is not a regular file: not applied`);
    throw error;
  }
  let text: string;
  try {
    checkStats(path, fstatSync(fd));
    const buffer = Buffer.alloc(maxControlFileBytes + 1);
    let length = 0;
    for (;;) {
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
      // Grown past the cap since it was checked.
      if (length > maxControlFileBytes) {
        throw new ControlFileError("too_large", `${path} is over ${maxControlFileBytes} bytes: not applied`);
      }
    }
    text = buffer.toString("utf8", 0, length);
  } finally {
    closeSync(fd);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not the parser's message: it quotes the text.
    parsed = undefined;
  }
  if (!Array.isArray(parsed) || !parsed.every(isCommand)) {
    throw new ControlFileError("malformed", `${path} does not hold freeze commands`);
  }
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

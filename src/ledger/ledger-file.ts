import { closeSync, openSync, type Stats, statSync } from "node:fs";

/**
 * The ledger file (and its -wal) as SQLite opened them, by device and inode.
 * SQLite keeps writing through its open descriptors after the path is removed
 * (`rm -rf` of the directory) or replaced (`mv other.db ledger.db`), into files
 * no restart will find; comparing the path with what was opened notices that.
 */
export class LedgerFileIdentity {
  readonly #path: string;
  readonly #db: Identity;
  #wal: Identity | undefined;

  /** Call once SQLite has opened the file (and, in WAL mode, its -wal). */
  constructor(path: string) {
    this.#path = path;
    const db = identityOf(path);
    if (db === undefined) throw new Error(`the ledger ${path} disappeared while it was being opened`);
    this.#db = db;
    this.#wal = identityOf(`${path}-wal`);
  }

  /**
   * Undefined while the path and its -wal still name the opened files;
   * otherwise what changed. Throws when the path cannot be examined (e.g.
   * EACCES), which proves nothing either way.
   */
  problem(): string | undefined {
    const db = identityOf(this.#path);
    if (db === undefined) return `the ledger file ${this.#path} was removed`;
    if (!sameFile(db, this.#db)) return `the ledger file ${this.#path} was replaced by another file`;
    const wal = identityOf(`${this.#path}-wal`);
    if (this.#wal === undefined) {
      // SQLite creates the -wal at the first write of a new ledger; remember the one it created.
      this.#wal = wal;
      return undefined;
    }
    if (wal === undefined) return `the ledger's write-ahead log ${this.#path}-wal was removed`;
    if (!sameFile(wal, this.#wal)) return `the ledger's write-ahead log ${this.#path}-wal was replaced by another file`;
    return undefined;
  }
}

interface Identity {
  readonly dev: number;
  readonly ino: number;
}

function identityOf(path: string): Identity | undefined {
  let stats: Stats;
  try {
    stats = statSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw error;
  }
  return { dev: stats.dev, ino: stats.ino };
}

function sameFile(a: Identity, b: Identity): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/**
 * Creates a new ledger file owner-only (0600; SQLite gives its -wal the same
 * mode). Returns a warning for an existing ledger that grants access to group
 * or others; it is used anyway (earlier builds created ledgers 0644).
 */
export function createOwnerOnly(path: string): string | undefined {
  try {
    closeSync(openSync(path, "wx", 0o600));
    return undefined;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  const mode = statSync(path).mode & 0o777;
  return (mode & 0o077) === 0
    ? undefined
    : `the ledger ${path} is accessible to group or others (mode ${mode.toString(8).padStart(4, "0")}); chmod 600 it and its -wal`;
}

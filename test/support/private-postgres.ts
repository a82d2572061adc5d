import { execFile } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
/** PostgreSQL's binaries (README: PostgreSQL 15); OPENEXEC_TEST_PG_BIN overrides. */
const binDir = process.env.OPENEXEC_TEST_PG_BIN ?? "/usr/lib/postgresql/15/bin";

/**
 * A PostgreSQL cluster of the test's own, for faults the shared one must never
 * see (stopping it, breaking its connections): initdb into a temporary
 * directory owned by `postgres`, trust authentication, listening on
 * 127.0.0.1 on a free port, its socket in that directory.
 */
export interface PrivatePostgres {
  /** postgres://postgres@127.0.0.1:PORT/postgres */
  readonly url: string;
  readonly port: number;
  /** pg_ctl stop: "fast" disconnects clients and shuts down cleanly; "immediate" is a crash. */
  stop(options?: { mode?: "smart" | "fast" | "immediate" }): Promise<void>;
  /** pg_ctl start, on the same port; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Stops it (immediate) and removes its directory. Safe to call more than once. */
  destroy(): Promise<void>;
}

/** Why a private cluster cannot be made here (not root, no binaries), or false; under CI=true it throws instead. */
export function privatePostgresSkipReason(): string | false {
  let reason: string | undefined;
  if (!existsSync(join(binDir, "initdb"))) reason = `no PostgreSQL binaries in ${binDir}`;
  else if (process.getuid?.() !== 0) reason = "a private PostgreSQL cluster needs root (to run initdb as postgres)";
  if (reason === undefined) return false;
  if (process.env.CI === "true") throw new Error(`${reason} (CI=true: tests that need PostgreSQL never skip)`);
  return reason;
}

/** A loopback port nothing listens on now (a short race with other processes is accepted). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function asPostgres(command: string, args: string[]) {
  return run("runuser", ["-u", "postgres", "--", join(binDir, command), ...args], { timeout: 60_000 });
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dir = mkdtempSync(join(tmpdir(), "oe-pg-"));
  const data = join(dir, "data");
  const port = await freePort();
  let destroyed = false;
  const pgCtl = (args: string[]) => asPostgres("pg_ctl", ["-D", data, "-w", "-t", "30", ...args]);
  const start = async () => {
    await pgCtl([
      "-l",
      join(dir, "server.log"),
      "-o",
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100`,
      "start",
    ]);
  };
  const destroy = async () => {
    if (destroyed) return;
    destroyed = true;
    await pgCtl(["-m", "immediate", "stop"]).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const { uid, gid } = await postgresIds();
    chownSync(dir, uid, gid);
    await asPostgres("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "--no-instructions"]);
    await start();
  } catch (error) {
    await destroy();
    throw error;
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    start,
    stop: async ({ mode = "fast" } = {}) => {
      await pgCtl(["-m", mode, "stop"]);
    },
    destroy,
  };
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const [uid, gid] = await Promise.all([run("id", ["-u", "postgres"]), run("id", ["-g", "postgres"])]);
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

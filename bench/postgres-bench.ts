import { generateKeyPairSync, randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import pg from "pg";
import { processCpuMs, type ServerChild } from "./processes.js";

/** What a scenario runs against: its servers, and how to count what they stored. */
export interface Deployment {
  readonly servers: readonly ServerChild[];
  /** Rows in the ledger by status, read after the servers stopped. */
  rows(): Promise<Record<string, number>>;
  /** CPU time (ms) the database's processes have used so far; undefined where not measured (SQLite). */
  databaseCpuMs(): number | undefined;
  /** Removes what the deployment created (a PostgreSQL schema). */
  close(): Promise<void>;
}

/**
 * The PostgreSQL scenarios' database: BENCH_PG_URL, else the machine's
 * (postgres://postgres@127.0.0.1:5432/test). Each scenario gets a schema of its
 * own, dropped at the end; its replicas share one receipt key, as in production.
 */
export class PostgresBench {
  private constructor(
    readonly url: string,
    readonly version: string,
  ) {}

  /** Undefined (and a line on stderr) when no PostgreSQL answers: the other scenarios still run. */
  static async connect(log: (message: string) => void): Promise<PostgresBench | undefined> {
    const url = process.env.BENCH_PG_URL || "postgres://postgres@127.0.0.1:5432/test";
    try {
      const [row] = await query<{ version: string }>(url, "SHOW server_version");
      return new PostgresBench(url, `PostgreSQL ${row?.version ?? "?"}`);
    } catch (error) {
      log(`bench: no PostgreSQL scenarios: ${(error as Error).message} (set BENCH_PG_URL)`);
      return undefined;
    }
  }

  async deploy(replicas: number, spawn: (env: Record<string, string>) => Promise<ServerChild>): Promise<Deployment> {
    const schema = `oe_bench_${randomBytes(6).toString("hex")}`;
    await query(this.url, `CREATE SCHEMA ${schema}`);
    const url = new URL(this.url);
    url.searchParams.set("options", `-c search_path=${schema}`);
    const receiptKey = generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString();
    const env = { OPENEXEC_DB_URL: url.toString(), OPENEXEC_RECEIPT_KEY: receiptKey };
    const servers: ServerChild[] = [];
    try {
      // Together, as replicas start in a deployment: the migration lock makes one of them migrate.
      servers.push(...(await Promise.all(Array.from({ length: replicas }, () => spawn(env)))));
    } catch (error) {
      for (const server of servers) await server.stop(1000);
      await query(this.url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      throw error;
    }
    return {
      servers,
      rows: async () => {
        const rows = await query<{ status: string; n: number }>(
          this.url,
          `SELECT status, count(*)::integer AS n FROM ${schema}.executions GROUP BY status`,
        );
        return Object.fromEntries(rows.map((row) => [row.status, row.n]));
      },
      databaseCpuMs: postgresCpuMs,
      close: async () => {
        await query(this.url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      },
    };
  }
}

async function query<R extends pg.QueryResultRow>(url: string, text: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  await client.connect();
  try {
    return (await client.query<R>(text)).rows;
  } finally {
    await client.end();
  }
}

/**
 * CPU time (ms) of every process on this machine named `postgres` (the
 * postmaster, its backends, the WAL writer and checkpointer). Backends that
 * exited between two readings drop out, so a reading can undercount a little.
 */
function postgresCpuMs(): number | undefined {
  let total = 0;
  let found = false;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, "utf8").trim() !== "postgres") continue;
    } catch {
      continue;
    }
    const ms = processCpuMs(Number(entry));
    if (ms !== undefined) {
      total += ms;
      found = true;
    }
  }
  return found ? total : undefined;
}

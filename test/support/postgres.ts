import { randomBytes } from "node:crypto";
import pg from "pg";

/**
 * The machine's PostgreSQL (README: 127.0.0.1:5432, user postgres, database
 * test), or OPENEXEC_TEST_PG_URL. Each test gets its own schema in it, so
 * tests never see each other's rows.
 */
export const sharedPostgresUrl = process.env.OPENEXEC_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";

let reachable: Promise<string | undefined> | undefined;

/** Why PostgreSQL cannot be used, or undefined when it can. */
function unreachableReason(): Promise<string | undefined> {
  reachable ??= (async () => {
    const client = new pg.Client({ connectionString: sharedPostgresUrl, connectionTimeoutMillis: 3000 });
    try {
      await client.connect();
      await client.query("SELECT 1");
      return undefined;
    } catch (error) {
      return `PostgreSQL at ${sharedPostgresUrl} is not reachable: ${(error as Error).message}`;
    } finally {
      await client.end().catch(() => undefined);
    }
  })();
  return reachable;
}

/**
 * For `describe(..., { skip })`-style use: resolves to false when PostgreSQL
 * can be used. Without it, a test is skipped with the reason printed, except
 * under CI=true, where it must fail: CI never skips silently.
 */
export async function postgresSkipReason(): Promise<string | false> {
  const reason = await unreachableReason();
  if (reason === undefined) return false;
  if (process.env.CI === "true") throw new Error(`${reason} (CI=true: tests that need PostgreSQL never skip)`);
  return reason;
}

/** A fresh, empty schema in the shared test database, and a URL whose connections use it. */
export interface PostgresSchema {
  readonly name: string;
  readonly url: string;
  drop(): Promise<void>;
}

export async function freshSchema(baseUrl = sharedPostgresUrl): Promise<PostgresSchema> {
  const name = `oe_test_${randomBytes(6).toString("hex")}`;
  await adminQuery(baseUrl, `CREATE SCHEMA ${name}`);
  return {
    name,
    url: withSearchPath(baseUrl, name),
    drop: async () => {
      await adminQuery(baseUrl, `DROP SCHEMA IF EXISTS ${name} CASCADE`);
    },
  };
}

/** The URL with every connection's search_path set to `schema` (libpq's `options` parameter). */
export function withSearchPath(url: string, schema: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set("options", `-c search_path=${schema}`);
  return parsed.toString();
}

/** One statement on its own connection. */
export async function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
  url: string,
  text: string,
  values?: unknown[],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

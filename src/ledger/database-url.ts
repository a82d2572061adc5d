import { isAbsolute, resolve } from "node:path";

/** Where the ledger lives, parsed from OPENEXEC_DB_URL. */
export type DatabaseLocation =
  | { readonly kind: "sqlite"; readonly path: string }
  | { readonly kind: "postgres"; readonly url: string };

export class DatabaseUrlError extends Error {
  override readonly name = "DatabaseUrlError";
}

/**
 * `sqlite:///openexec.db` is relative to the working directory and
 * `sqlite:////var/lib/openexec/ledger.db` absolute, as in SQLAlchemy, whose
 * URLs the original service took. `postgres://` and `postgresql://` name a
 * PostgreSQL server.
 */
export function parseDatabaseUrl(url: string, cwd: string = process.cwd()): DatabaseLocation {
  const sqlitePrefix = "sqlite:///";
  if (url.startsWith(sqlitePrefix)) {
    const rest = decodeURIComponent(url.slice(sqlitePrefix.length));
    if (rest === "" || rest === "/") {
      throw new DatabaseUrlError(`OPENEXEC_DB_URL "${url}" names no database file`);
    }
    if (rest.includes("?") || rest.includes("\0")) {
      throw new DatabaseUrlError(`OPENEXEC_DB_URL "${url}" has query options, which are not supported`);
    }
    const path = isAbsolute(rest) ? rest : resolve(cwd, rest);
    return { kind: "sqlite", path };
  }
  if (/^postgres(?:ql)?:\/\//.test(url)) {
    return { kind: "postgres", url };
  }
  throw new DatabaseUrlError(
    `OPENEXEC_DB_URL must start with sqlite:/// (e.g. sqlite:///openexec.db) or postgres://; got "${redactUrl(url)}"`,
  );
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@/]*@/, "//$1:***@");
}

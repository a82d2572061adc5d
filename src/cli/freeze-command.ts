import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { defaultDatabaseUrl } from "../config/server-config.js";
import { controlFilePath, type FreezeCommand, hasCommands, postCommand } from "../freeze/control-file.js";
import { allActions, isValidScope, maxReasonLength } from "../freeze/freeze-scope.js";
import { parseDatabaseUrl, redactUrl } from "../ledger/database-url.js";
import { LedgerInUseError } from "../ledger/errors.js";
import type { FreezeStorage } from "../ledger/ports.js";
import { openPostgresStorageForControl } from "../ledger/postgres-storage.js";
import { openSqliteStorage } from "../ledger/sqlite-storage.js";
import { UsageError } from "./ledger-access.js";

export const freezeHelp = `Usage: openexec freeze [--action NAME] --reason TEXT [--db URL]
       openexec unfreeze [--action NAME] [--db URL]

The operator's kill switch. freeze refuses every new execution (or, with
--action, those of one action) with 503 "frozen", recorded as a denial with a
receipt, until unfreeze; replays of finished executions are still answered.
It is stored in the ledger: every replica on a shared PostgreSQL ledger reads
it within about a second; a running server on a SQLite ledger (which holds the
file) gets it through <db>.freeze.json and applies it within about a second.

Options:
  --action NAME  one action (default: every action)
  --reason TEXT  why (required for freeze; shown in /health, at most ${maxReasonLength} characters)
  --db URL       the ledger (default OPENEXEC_DB_URL, else ${defaultDatabaseUrl})
  -h, --help     show this help
`;

/** How long the command waits for a running SQLite server to take its command. */
const applyWaitMs = 5000;

export function freezeCommand(args: string[]): Promise<number> {
  return run("freeze", args);
}

export function unfreezeCommand(args: string[]): Promise<number> {
  return run("unfreeze", args);
}

async function run(op: FreezeCommand["op"], args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      action: { type: "string" },
      reason: { type: "string" },
      db: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) {
    process.stdout.write(freezeHelp);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const scope = values.action ?? allActions;
  if (!isValidScope(scope)) {
    throw new UsageError('--action must be an action name of lower-case dotted words, e.g. "echo" or "counter.add"');
  }
  let command: FreezeCommand;
  if (op === "freeze") {
    const reason = values.reason?.trim() ?? "";
    if (reason === "" || reason.length > maxReasonLength) {
      throw new UsageError(`freeze needs --reason: 1-${maxReasonLength} characters saying why`);
    }
    command = { op, scope, reason, frozenAtMs: Date.now() };
  } else {
    if (values.reason !== undefined) throw new UsageError("unfreeze takes no --reason");
    command = { op, scope };
  }

  const location = parseDatabaseUrl(values.db ?? process.env.OPENEXEC_DB_URL ?? defaultDatabaseUrl);
  if (location.kind === "postgres") {
    let storage: FreezeStorage & { close(): Promise<void> };
    try {
      storage = await openPostgresStorageForControl({
        url: location.url,
        poolSize: 1,
        statementTimeoutMs: 10_000,
        connectTimeoutMs: 10_000,
      });
    } catch (error) {
      throw new UsageError(`cannot open the ledger at ${redactUrl(location.url)}: ${(error as Error).message}`);
    }
    try {
      return report(command, await apply(storage, command), "ledger");
    } finally {
      await storage.close();
    }
  }

  if (!existsSync(location.path)) throw new UsageError(`no ledger at ${location.path}`);
  let storage: ReturnType<typeof openSqliteStorage>;
  try {
    storage = openSqliteStorage(location.path);
  } catch (error) {
    if (!(error instanceof LedgerInUseError)) throw error;
    // A running server holds the file: hand it the command, and wait until it has taken it.
    const mailbox = controlFilePath(location.path);
    postCommand(mailbox, command);
    const deadline = Date.now() + applyWaitMs;
    while (hasCommands(mailbox) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    if (hasCommands(mailbox)) {
      process.stderr.write(
        `openexec: the server holding ${location.path} has not taken ${mailbox} yet; it applies it when it does (or at its next start)\n`,
      );
      return 1;
    }
    return report(command, undefined, "running server");
  }
  try {
    return report(command, await apply(storage, command), "ledger");
  } finally {
    await storage.close();
  }
}

/** Applies the command; for unfreeze, whether there was a freeze to lift. */
async function apply(storage: FreezeStorage, command: FreezeCommand): Promise<boolean | undefined> {
  if (command.op === "freeze") {
    await storage.setFreeze({ scope: command.scope, reason: command.reason, frozenAtMs: command.frozenAtMs });
    return undefined;
  }
  return storage.clearFreeze(command.scope);
}

function report(command: FreezeCommand, lifted: boolean | undefined, via: string): number {
  const answer: Record<string, unknown> = { op: command.op, scope: command.scope, applied_by: via };
  if (lifted !== undefined) answer.lifted = lifted;
  process.stdout.write(`${JSON.stringify(answer)}\n`);
  return 0;
}

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBuiltinRegistry } from "../../src/actions/builtin.js";
import type { ActionRegistry } from "../../src/actions/registry.js";
import { loadServerConfig } from "../../src/config/server-config.js";
import { silentLogger } from "../../src/log/logger.js";
import { type RunningServer, startServer } from "../../src/server.js";
import { packageRoot } from "../../src/version.js";
import { nodeArgsFor } from "./entry.js";

/** A scratch directory removed by `cleanup`. */
export function scratchDir(prefix = "openexec-test-"): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export interface TestServer extends RunningServer {
  readonly dbPath: string;
  /** Shuts down and removes the scratch directory. */
  close(): Promise<void>;
}

/**
 * A real server in this process on a free loopback port, with its own SQLite
 * file. `env` is the environment it reads (nothing is inherited).
 */
export async function startTestServer(
  env: Record<string, string> = {},
  options: { dbPath?: string; actions?: ActionRegistry } = {},
): Promise<TestServer> {
  const dir = options.dbPath === undefined ? scratchDir() : undefined;
  const dbPath = options.dbPath ?? join(dir?.path ?? "", "ledger.db");
  const actions = options.actions ?? createBuiltinRegistry();
  const config = loadServerConfig(
    // Checkpoints are published by a timer (reads never sign one): a short interval keeps tests quick.
    // In-process servers keep the ledger on the main thread unless a test asks for the writer thread
    // (from TypeScript sources a worker takes about a second to start); spawned servers use the default.
    {
      OPENEXEC_DB_URL: `sqlite:///${dbPath}`,
      OPENEXEC_CHECKPOINT_INTERVAL_MS: "100",
      OPENEXEC_LEDGER_THREAD: "off",
      // No drain period (default 5 s) unless a test asks for one: nothing routes to a test server.
      OPENEXEC_DRAIN_MS: "0",
      ...env,
    },
    { host: "127.0.0.1", port: "0" },
    actions.names(),
  );
  const server = await startServer(config, silentLogger(), actions);
  return {
    ...server,
    dbPath,
    async close() {
      await server.shutdown();
      dir?.cleanup();
    },
  };
}

export interface ServerProcess {
  readonly child: ChildProcess;
  readonly url: string;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
}

/** A Node process started from one of this package's entry points, and the URL it announces on stderr. */
export interface ListeningProcess {
  readonly child: ChildProcess;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
  /** The URL of its "listening on http://…" line; rejects if it exits first or takes longer than the start timeout. */
  readonly listening: Promise<string>;
}

/**
 * Spawns `node <script> <args>` with exactly `env` and watches its stderr for the listening line.
 * `script` is a .ts file of this package, run compiled from .build/ or through tsx (see ./entry.ts).
 */
export function spawnListening(
  script: string,
  args: readonly string[],
  env: Record<string, string>,
  options: { readonly cwd?: string; readonly startTimeoutMs?: number } = {},
): ListeningProcess {
  const child = spawn(process.execPath, [...nodeArgsFor(script), ...args], {
    cwd: options.cwd ?? packageRoot,
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const listening = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${script} did not start:\n${stderr}`)),
      options.startTimeoutMs ?? 20_000,
    );
    const onData = () => {
      const match = /listening on (http:\/\/\S+)/.exec(stderr);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        child.stderr?.off("data", onData);
        resolve(match[1]);
      }
    };
    child.stderr?.on("data", onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${stderr}`));
    });
  });
  listening.catch(() => undefined);
  return { child, stderr: () => stderr, exited, listening };
}

/**
 * `openexec serve` as a real child process (for signals, restarts and start-up errors). A SIGTERM
 * stops it without a drain period unless `env` sets OPENEXEC_DRAIN_MS (the drain tests do).
 */
export async function spawnServer(
  env: Record<string, string>,
  args: string[] = ["--port", "0"],
  cwd = packageRoot,
): Promise<ServerProcess> {
  const started = spawnListening(
    join(packageRoot, "src/cli/main.ts"),
    ["serve", ...args],
    {
      PATH: process.env.PATH ?? "",
      OPENEXEC_LOG_LEVEL: "warn",
      OPENEXEC_CHECKPOINT_INTERVAL_MS: "100",
      OPENEXEC_DRAIN_MS: "0",
      ...env,
    },
    { cwd },
  );
  const url = await started.listening;
  return { child: started.child, url, stderr: started.stderr, exited: started.exited };
}

/** Runs `openexec <args>` to completion. */
export async function runCli(
  args: string[],
  env: Record<string, string> = {},
  input?: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [...nodeArgsFor(join(packageRoot, "src/cli/main.ts")), ...args], {
    cwd: packageRoot,
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => {
    stdout += c;
  });
  child.stderr.setEncoding("utf8").on("data", (c: string) => {
    stderr += c;
  });
  child.stdin.end(input ?? "");
  const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
  return { code, stdout, stderr };
}

/**
 * Runs one CLI command's function in this process (no process start-up), with
 * what it writes to stdout captured: for the many verdicts of one command
 * where a subprocess proves nothing more than the one real run beside them.
 */
export async function runCommandInProcess(
  command: (args: string[]) => Promise<number>,
  args: string[],
): Promise<{ code: number; stdout: string }> {
  let stdout = "";
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => {
    stdout += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
    return true;
  }) as typeof process.stdout.write;
  try {
    return { code: await command(args), stdout };
  } finally {
    process.stdout.write = write;
  }
}

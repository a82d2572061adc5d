import type { ChildProcess } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import { type AuditReport, auditLedger } from "../../src/evidence/audit-ledger.js";
import { PostgresLedgerStore } from "../../src/ledger/postgres-store.js";
import { parsePublicKeyPem } from "../../src/signing/ed25519-keys.js";
import { packageRoot } from "../../src/version.js";
import { adminQuery } from "./postgres.js";
import { spawnListening } from "./test-server.js";

const replicaMain = join(packageRoot, "test/support/replica-main.ts");
/** `openexec serve` itself, for start-up refusals. */
export const serveCommand = [join(packageRoot, "src/cli/main.ts"), "serve", "--port", "0"];

/** A fresh Ed25519 receipt key, PEM PKCS#8: what every replica of one ledger signs with. */
export function generateReceiptKeyPem(): string {
  return generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString();
}

export interface Replica {
  readonly child: ChildProcess;
  readonly url: string;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  /** SIGKILL: the process dies mid-flight, as in a crash. */
  kill(): Promise<void>;
  /** SIGTERM, then SIGKILL if it has not exited within `ms`. Safe to call on a dead replica. */
  stop(ms?: number): Promise<void>;
}

export interface ReplicaStart {
  readonly child: ChildProcess;
  stderr(): string;
  readonly exited: Promise<number | null>;
  /** The URL once it listens; rejects if it exits first. */
  readonly listening: Promise<string>;
}

/**
 * Spawns test/support/replica-main.ts (`openexec serve` plus `test.slow`), or
 * `command` (a script and its arguments), with exactly `env` (and PATH).
 */
export function spawnReplicaProcess(
  env: Record<string, string>,
  command: readonly string[] = [replicaMain],
): ReplicaStart {
  const [script = replicaMain, ...args] = command;
  return spawnListening(
    script,
    args,
    {
      PATH: process.env.PATH ?? "",
      OPENEXEC_LOG_LEVEL: "error",
      OPENEXEC_CHECKPOINT_INTERVAL_MS: "100",
      // No drain period (default 5 s): stop() would SIGKILL a replica still draining.
      OPENEXEC_DRAIN_MS: "0",
      ...env,
    },
    { startTimeoutMs: 120_000 },
  );
}

/** A replica that listens; throws (and leaves no process behind) if it does not start. */
export async function startReplica(env: Record<string, string>): Promise<Replica> {
  const started = spawnReplicaProcess(env);
  const { child, exited } = started;
  const alive = () => child.exitCode === null && child.signalCode === null;
  const stop = async (ms = 5000) => {
    if (!alive()) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), ms);
    await exited;
    clearTimeout(timer);
  };
  let url: string;
  try {
    url = await started.listening;
  } catch (error) {
    await stop(0);
    throw error;
  }
  return {
    child,
    url,
    stderr: started.stderr,
    exited,
    stop,
    kill: async () => {
      if (!alive()) return;
      child.kill("SIGKILL");
      await exited;
    },
  };
}

/**
 * `count` replicas on one ledger, started in parallel. Everything in `env`
 * is shared (OPENEXEC_DB_URL, OPENEXEC_RECEIPT_KEY, ...); `perReplica(i)` adds to it.
 * If any fails to start, the others are stopped and the error is thrown.
 */
export async function startReplicas(
  count: number,
  env: Record<string, string>,
  perReplica: (index: number) => Record<string, string> = () => ({}),
): Promise<Replica[]> {
  const results = await Promise.allSettled(
    Array.from({ length: count }, (_, i) => startReplica({ ...env, ...perReplica(i) })),
  );
  const failed = results.find((r) => r.status === "rejected");
  if (failed !== undefined) {
    await Promise.all(results.map((r) => (r.status === "fulfilled" ? r.value.stop() : undefined)));
    throw (failed as PromiseRejectedResult).reason;
  }
  return results.map((r) => (r as PromiseFulfilledResult<Replica>).value);
}

/** Stops every replica (SIGTERM, then SIGKILL); for `after` hooks. */
export async function stopAll(replicas: readonly (Replica | undefined)[]): Promise<void> {
  await Promise.all(replicas.map((r) => r?.stop()));
}

/**
 * What `openexec audit` checks, over the shared ledger while replicas may
 * still write to it: every leaf against its receipt, the tree rebuilt from
 * the receipts, every checkpoint against it and the key. (The library, since
 * `openexec audit --db postgres://` is being added elsewhere.)
 */
export async function auditSharedLedger(url: string, publicKeyPem: string): Promise<AuditReport> {
  // The last writes are covered by a checkpoint once a replica's timer signs one (audit requires it).
  for (let attempt = 0; ; attempt++) {
    const [row] = await adminQuery<{ covered: boolean }>(
      url,
      "SELECT coalesce((SELECT max(tree_size) FROM checkpoints), -1) >= (SELECT size FROM log_state) AS covered",
    );
    if (row?.covered === true || attempt === 200) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const store = await PostgresLedgerStore.openReadOnly({
    url,
    poolSize: 2,
    statementTimeoutMs: 30_000,
    connectTimeoutMs: 5000,
  });
  try {
    return await auditLedger(store, parsePublicKeyPem(publicKeyPem));
  } finally {
    await store.close();
  }
}

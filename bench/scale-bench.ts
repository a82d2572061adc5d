/**
 * The ledger at scale: `npm run bench -- --scale` preloads BENCH_SCALE_N
 * executions (default 1,000,000) into a ledger through the ledger's own
 * recorder (signed receipts, leaves, tiles, checkpoint: a ledger `openexec
 * audit` accepts), then measures, in the same run as an empty ledger:
 *   - time from start to ready, and RSS;
 *   - Execute (REST) req/s against each, interleaved;
 *   - inclusion proof, consistency proof and bundle latency (p50, p99);
 *   - the longest stall of the event loop seen by a /health probe under proof
 *     load, in a second inclusion pass (its latencies are reported apart: the
 *     probe shares this process's event loop with the proof requests, so they
 *     wait behind its requests here, in the client, too);
 *   - bytes per execution on disk, and the time of `openexec audit`.
 * The servers run compiled, as installed (`bin/openexec.js`, `npm start`):
 * the sources are built first (`npm run build`), so they are never stale.
 * BENCH_SCALE_FROM_SOURCE=1 runs them from TypeScript through tsx instead,
 * which adds tsx and esbuild to each thread (about 70 MB of RSS).
 * Figures go in docs/PERFORMANCE.md.
 */
import { execFileSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { Agent } from "node:http";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { canonicalJsonDigest } from "../src/json/canonical-digest.js";
import { SqliteLedgerStore } from "../src/ledger/sqlite-store.js";
import { loadReceiptKey } from "../src/receipts/receipt-key.js";
import { getBody, percentile, postJson, runPhase } from "./load.js";
import { makeScratchDir, removeScratchDir, type ServerChild, spawnServer } from "./processes.js";

const packageRoot = fileURLToPath(new URL("..", import.meta.url));
const fromSource = process.env.BENCH_SCALE_FROM_SOURCE === "1";
/** The CLI as `node` runs it: compiled (as installed), or from sources through tsx. */
const cli = fromSource
  ? ["--import", "tsx", join(packageRoot, "src/cli/main.ts")]
  : [join(packageRoot, "dist/src/cli/main.js")];

/** Compiles the sources to dist/ (npm run build), so the compiled server is this work tree's. */
function build(): void {
  if (fromSource) return;
  execFileSync(process.execPath, [join(packageRoot, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"], {
    cwd: packageRoot,
    stdio: "inherit",
  });
}

/** Fills a ledger with `count` executed echo executions, in commits of `batch`. */
export async function preload(path: string, count: number): Promise<void> {
  const pem = generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString();
  writeFileSync(`${path}.receipt-key.pem`, pem, { mode: 0o600 });
  const key = loadReceiptKey(pem, "");
  const origin = `openexec/${key.public.keyId}`;
  const ledger = SqliteLedgerStore.open(path, {
    signer: { keyId: key.public.keyId, sign: key.sign },
    logOrigin: origin,
  });
  const batch = 2000;
  const started = performance.now();
  for (let done = 0; done < count; done += batch) {
    await Promise.all(
      Array.from({ length: Math.min(batch, count - done) }, (_, i) => {
        const n = done + i;
        const digest = Buffer.alloc(32);
        digest.writeUInt32BE(n);
        return ledger.reserveAndComplete(
          {
            executionId: `00000000-0000-7000-8000-${n.toString(16).padStart(12, "0")}`,
            tenantId: "demo",
            nonce: `preload-${n}`,
            action: "echo",
            payloadDigest: digest,
            approval: undefined,
            logicalTime: new Date(1_700_000_000_000 + n),
          },
          { kind: "executed", effect: { kind: "result", result: { n }, resultDigest: canonicalJsonDigest({ n }) } },
        );
      }),
    );
    if ((done / batch) % 50 === 0)
      console.error(`scale: preloaded ${done} (${Math.round(performance.now() - started)} ms)`);
  }
  await ledger.checkpoint(key.noteSigner(origin));
  await ledger.close();
  console.error(`scale: preloaded ${count} in ${Math.round(performance.now() - started)} ms`);
}

async function startServer(dbPath: string): Promise<{ server: ServerChild; readyMs: number }> {
  const started = performance.now();
  const server = await spawnServer([...cli, "serve", "--host", "127.0.0.1", "--port", "0"], {
    cwd: packageRoot,
    env: { PATH: process.env.PATH ?? "", OPENEXEC_DB_URL: `sqlite:///${dbPath}`, OPENEXEC_LOG_LEVEL: "warn" },
    startTimeoutMs: 120_000,
  });
  for (;;) {
    if ((await fetch(`${server.url}/ready`)).status === 200) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return { server, readyMs: performance.now() - started };
}

export function rssMb(pid: number | undefined): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

async function executeRate(url: string, seconds: number, tag: string): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: 32 });
  let seq = 0;
  const target = new URL("/execute", url);
  const phase = await runPhase(
    (n) =>
      postJson(
        agent,
        target,
        JSON.stringify({ action: "echo", payload: { n }, nonce: `${tag}-${n}` }),
        { "content-type": "application/json" },
        10_000,
      ).then(() => undefined),
    { concurrency: 32, durationMs: seconds * 1000, maxRequests: 1_000_000, maxErrors: 100 },
    () => seq++,
  );
  agent.destroy();
  return phase.latencies.length / phase.seconds;
}

/**
 * Sequential GETs on one keep-alive connection (node:http, the lean client:
 * fetch added about 1 ms at the median and several at the tail): latencies
 * in ms, sorted.
 */
export async function latencies(urls: readonly string[]): Promise<number[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const out: number[] = [];
  try {
    for (const url of urls) {
      const started = performance.now();
      await getBody(agent, url, 10_000);
      out.push(performance.now() - started);
    }
  } finally {
    agent.destroy();
  }
  return out.sort((a, b) => a - b);
}

/** The longest gap between /health answers while `work` runs: how long the event loop was held. */
export async function longestStall(url: string, work: Promise<unknown>): Promise<number> {
  let done = false;
  let longest = 0;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const probe = (async () => {
    while (!done) {
      const started = performance.now();
      await getBody(agent, `${url}/health`, 10_000);
      longest = Math.max(longest, performance.now() - started);
    }
  })();
  try {
    await work;
  } finally {
    done = true;
    await probe;
    agent.destroy();
  }
  return longest;
}

export async function runScaleBench(): Promise<void> {
  const count = Number(process.env.BENCH_SCALE_N ?? 1_000_000);
  const seconds = Number(process.env.BENCH_SECONDS ?? 8);
  build();
  const dir = makeScratchDir("openexec-scale-");
  try {
    const big = join(dir, "big.db");
    const empty = join(dir, "empty.db");
    await preload(big, count);
    await preload(empty, 0);
    // Three disjoint sets of 200, spread over the log: each pass below proves leaves no earlier pass read.
    const spread = (() => {
      const db = new Database(big, { readonly: true });
      const rows = db
        .prepare<[number], { execution_id: string }>(
          "SELECT execution_id FROM executions WHERE rowid % ? = 0 LIMIT 600",
        )
        .all(Math.max(1, Math.floor(count / 600)));
      db.close();
      return rows.map((row) => row.execution_id);
    })();
    const ids = {
      alone: spread.filter((_, i) => i % 3 === 0),
      probed: spread.filter((_, i) => i % 3 === 1),
      bundles: spread.filter((_, i) => i % 3 === 2),
    };

    const bigServer = await startServer(big);
    const emptyServer = await startServer(empty);
    try {
      const rates = { empty: [] as number[], big: [] as number[] };
      for (let round = 0; round < 2; round++) {
        rates.empty.push(await executeRate(emptyServer.server.url, seconds / 2, `e${round}`));
        rates.big.push(await executeRate(bigServer.server.url, seconds / 2, `b${round}`));
      }
      const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
      const size = count + Math.round((sum(rates.big) * seconds) / 2);
      const url = bigServer.server.url;
      const inclusionMs = await latencies(ids.alone.map((id) => `${url}/log/inclusion?exec_id=${id}`));
      const probed = latencies(ids.probed.map((id) => `${url}/log/inclusion?exec_id=${id}`));
      const stall = await longestStall(url, probed);
      const probedMs = await probed;
      const consistency = await latencies(
        Array.from({ length: 100 }).map(
          (_, i) => `${url}/log/consistency?old_size=${1 + i * Math.floor(count / 100)}&new_size=${count}`,
        ),
      );
      const bundles = await latencies(ids.bundles.map((id) => `${url}/receipts/bundle?exec_id=${id}`));
      const rss = rssMb(bigServer.server.child.pid);
      const emptyRss = rssMb(emptyServer.server.child.pid);
      await bigServer.server.stop();
      await emptyServer.server.stop();
      const bytes = ["", "-wal"].reduce((total, suffix) => {
        try {
          return total + statSync(`${big}${suffix}`).size;
        } catch {
          return total;
        }
      }, 0);
      const auditStarted = performance.now();
      let audit: string;
      try {
        audit = execFileSync(process.execPath, [...cli, "audit", "--db", `sqlite:///${big}`], {
          cwd: packageRoot,
          encoding: "utf8",
          maxBuffer: 16 * 1024 * 1024,
        });
      } catch (error) {
        audit = (error as { stdout?: string }).stdout ?? '{"ok":false}';
      }
      const auditMs = performance.now() - auditStarted;
      const fmt = (sorted: number[]) =>
        `p50 ${percentile(sorted, 0.5).toFixed(1)} ms, p99 ${percentile(sorted, 0.99).toFixed(1)} ms`;
      console.log(
        `scale: ${count} executions preloaded (${size} at the end); servers ${fromSource ? "from sources (tsx)" : "compiled (dist/)"}`,
      );
      console.log(
        `ready after start: empty ${Math.round(emptyServer.readyMs)} ms, ${count} ${Math.round(bigServer.readyMs)} ms`,
      );
      console.log(
        `Execute (REST, c=32): empty ${Math.round(sum(rates.empty) / 2)} req/s, ${count} ${Math.round(sum(rates.big) / 2)} req/s, ratio ${(sum(rates.big) / sum(rates.empty)).toFixed(2)}x`,
      );
      console.log(`inclusion proofs: ${fmt(inclusionMs)}`);
      console.log(
        `inclusion proofs under a /health probe: ${fmt(probedMs)}; longest /health answer meanwhile ${stall.toFixed(1)} ms`,
      );
      console.log(`consistency proofs: ${fmt(consistency)}`);
      console.log(`bundles: ${fmt(bundles)}`);
      console.log(`RSS after load: empty ${emptyRss.toFixed(0)} MB, ${count} ${rss.toFixed(0)} MB`);
      console.log(`disk: ${(bytes / size).toFixed(0)} bytes per execution (${(bytes / 1048576).toFixed(0)} MB)`);
      const report = JSON.parse(audit) as { ok: boolean; first_divergence?: unknown };
      console.log(
        `openexec audit: ${(auditMs / 1000).toFixed(1)} s, ${report.ok ? "ok" : `NOT ok: ${JSON.stringify(report.first_divergence)}`}`,
      );
    } finally {
      await bigServer.server.stop().catch(() => undefined);
      await emptyServer.server.stop().catch(() => undefined);
    }
  } finally {
    removeScratchDir(dir);
  }
}

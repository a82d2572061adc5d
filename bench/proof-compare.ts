/**
 * Proof latency of two builds of the server on the same ledger, in one run:
 *
 *   BENCH_COMPARE_ROOT=<other checkout> node --import tsx bench/proof-compare.ts
 *
 * Preloads BENCH_SCALE_N executions (default 200,000) once, gives each server
 * its own copy of the file (one server per ledger), and runs each build
 * compiled (both are built first, each with its own tsc). Rounds alternate
 * between the two (the order flips every round) so that the machine's slow
 * swings fall on both alike; each round proves 200 leaves under a /health
 * probe, 200 bundles and 100 consistency proofs. BENCH_COMPARE_ROUNDS
 * (default 4). To compare against a commit:
 *
 *   mkdir /tmp/oe-base && git archive <commit> | tar -x -C /tmp/oe-base
 *   ln -s "$PWD/node_modules" /tmp/oe-base/node_modules
 */
import { execFileSync } from "node:child_process";
import { copyFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { percentile } from "./load.js";
import {
  installCleanupHandlers,
  makeScratchDir,
  removeScratchDir,
  type ServerChild,
  spawnServer,
} from "./processes.js";
import { latencies, longestStall, preload, rssMb } from "./scale-bench.js";

const here = fileURLToPath(new URL("..", import.meta.url));

async function serve(root: string, dbPath: string): Promise<ServerChild> {
  execFileSync(process.execPath, [join(here, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"], {
    cwd: root,
    stdio: "inherit",
  });
  const server = await spawnServer(
    [join(root, "dist/src/cli/main.js"), "serve", "--host", "127.0.0.1", "--port", "0"],
    {
      cwd: root,
      env: { PATH: process.env.PATH ?? "", OPENEXEC_DB_URL: `sqlite:///${dbPath}`, OPENEXEC_LOG_LEVEL: "warn" },
      startTimeoutMs: 120_000,
    },
  );
  while ((await fetch(`${server.url}/ready`)).status !== 200) await new Promise((resolve) => setTimeout(resolve, 10));
  return server;
}

async function main(): Promise<void> {
  const other = process.env.BENCH_COMPARE_ROOT;
  if (other === undefined || other === "") throw new Error("set BENCH_COMPARE_ROOT to the checkout to compare with");
  const count = Number(process.env.BENCH_SCALE_N ?? 200_000);
  const rounds = Number(process.env.BENCH_COMPARE_ROUNDS ?? 4);
  installCleanupHandlers();
  const dir = makeScratchDir("openexec-compare-");
  const servers: { name: string; server: ServerChild }[] = [];
  try {
    const ledger = join(dir, "ledger.db");
    await preload(ledger, count);
    const db = new Database(ledger, { readonly: true });
    const ids = db
      .prepare<[number], { execution_id: string }>("SELECT execution_id FROM executions WHERE rowid % ? = 0 LIMIT 200")
      .all(Math.max(1, Math.floor(count / 200)))
      .map((row) => row.execution_id);
    db.close();
    for (const [name, root] of [
      ["this tree", here],
      [other, other],
    ] as const) {
      const copy = join(dir, `${servers.length}.db`);
      copyFileSync(ledger, copy);
      copyFileSync(`${ledger}.receipt-key.pem`, `${copy}.receipt-key.pem`);
      servers.push({ name, server: await serve(root, copy) });
    }
    const results = servers.map(() => ({
      probed: [] as number[],
      bundles: [] as number[],
      consistency: [] as number[],
      stalls: [] as number[],
    }));
    for (let round = 0; round < rounds; round++) {
      // A different rotation of the leaves each round, and the order of the servers flipped.
      const leaves = [...ids.slice((round * 67) % ids.length), ...ids.slice(0, (round * 67) % ids.length)];
      for (const i of round % 2 === 0 ? [0, 1] : [1, 0]) {
        const { url } = (servers[i] as { server: ServerChild }).server;
        const result = results[i] as (typeof results)[number];
        const probed = latencies(leaves.map((id) => `${url}/log/inclusion?exec_id=${id}`));
        result.stalls.push(await longestStall(url, probed));
        result.probed.push(...(await probed));
        result.bundles.push(...(await latencies(leaves.map((id) => `${url}/receipts/bundle?exec_id=${id}`))));
        result.consistency.push(
          ...(await latencies(
            Array.from(
              { length: 100 },
              (_, k) => `${url}/log/consistency?old_size=${1 + k * Math.floor(count / 100)}&new_size=${count}`,
            ),
          )),
        );
      }
    }
    const fmt = (values: number[]) => {
      const sorted = [...values].sort((a, b) => a - b);
      return `p50 ${percentile(sorted, 0.5).toFixed(1)} ms, p99 ${percentile(sorted, 0.99).toFixed(1)} ms`;
    };
    console.log(`proofs at ${count} executions, ${rounds} interleaved rounds, servers compiled`);
    servers.forEach(({ name, server }, i) => {
      const result = results[i] as (typeof results)[number];
      console.log(`${name}:`);
      console.log(`  inclusion under a /health probe: ${fmt(result.probed)}`);
      console.log(`  longest /health answer per round: ${result.stalls.map((ms) => ms.toFixed(1)).join(", ")} ms`);
      console.log(`  bundles: ${fmt(result.bundles)}`);
      console.log(`  consistency: ${fmt(result.consistency)}`);
      console.log(`  RSS after: ${rssMb(server.child.pid).toFixed(0)} MB`);
    });
  } finally {
    for (const { server } of servers) await server.stop().catch(() => undefined);
    removeScratchDir(dir);
  }
}

await main();

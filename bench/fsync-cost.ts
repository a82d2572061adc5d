/**
 * What a durable write costs on this machine: autocommit INSERTs into a
 * SQLite file in WAL mode with synchronous=FULL (the baseline's write, one
 * fsync each) against synchronous=OFF, wall time and CPU per commit. The
 * baseline of `npm run bench` pays this once per request; OpenExec's group
 * commit shares it between the requests of a batch.
 *
 *   node --import tsx bench/fsync-cost.ts     # BENCH_FSYNC_N commits each (default 5000)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";

const count = Number(process.env.BENCH_FSYNC_N ?? 5000);
const dir = mkdtempSync(join(tmpdir(), "openexec-fsync-"));
try {
  for (const synchronous of ["FULL", "OFF"]) {
    const db = new Database(join(dir, `${synchronous}.db`));
    db.pragma("journal_mode = WAL");
    db.pragma(`synchronous = ${synchronous}`);
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
    const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
    const value = "x".repeat(100);
    const cpu = process.cpuUsage();
    const started = performance.now();
    for (let i = 0; i < count; i++) insert.run(value);
    const wallUs = ((performance.now() - started) * 1000) / count;
    const used = process.cpuUsage(cpu);
    const cpuUs = (used.user + used.system) / count;
    console.log(`synchronous=${synchronous}: ${wallUs.toFixed(1)} µs per commit, ${cpuUs.toFixed(1)} µs of it CPU`);
    db.close();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

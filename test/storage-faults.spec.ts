import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import Database from "better-sqlite3";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { SqliteLedgerStore } from "../src/ledger/sqlite-store.js";
import { type AnyJson, clientFor, getJson, postJson } from "./support/clients.js";
import { runCli, scratchDir, spawnServer, startTestServer, type TestServer } from "./support/test-server.js";

/**
 * Faults an operator causes on a running server's storage: rm -rf, mv over
 * the file, chattr +i, a read-only file. None may crash the server, and none
 * may let it acknowledge an execution that is not durable.
 */

const chattr = (flag: "+i" | "-i", path: string) => execFileSync("chattr", [flag, path], { stdio: "ignore" });

/** Whether this filesystem supports the immutable flag (ext4 here; tmpfs and overlayfs may not). */
function immutableSupported(dir: string): boolean {
  const probe = join(dir, "chattr-probe");
  writeFileSync(probe, "");
  try {
    chattr("+i", probe);
    chattr("-i", probe);
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { force: true });
  }
}

let nonces = 0;
const execute = (server: { url: string }, key = "faults") =>
  postJson(`${server.url}/execute`, {
    action: "counter.add",
    payload: { key, delta: 1 },
    nonce: `fault-${++nonces}`,
  });

/** A server that should refuse to start; if it starts anyway it is stopped again, and this resolves. */
async function spawnRefused(env: Record<string, string>): Promise<void> {
  const server = await spawnServer(env);
  server.child.kill("SIGTERM");
  await server.exited;
}

async function healthOf(url: string): Promise<ServingStatus> {
  return (await clientFor(Health, "grpc", url).check({ service: "" })).status;
}

/** Execute, /ready and gRPC health all say the ledger is unavailable. */
async function assertFailedClosed(url: string): Promise<void> {
  const refused = await execute({ url });
  assert.equal(refused.status, 503);
  assert.equal(refused.body.reason, "store_unavailable");
  assert.equal(refused.headers.get("openexec-reason"), "store_unavailable");
  assert.deepEqual(await getJson(`${url}/ready`), {
    status: 503,
    body: { ready: false, reason: "store_unavailable" },
  });
  assert.equal(await healthOf(url), ServingStatus.NOT_SERVING);
}

describe("the ledger file goes away under a running server", () => {
  it("rm -rf of its directory under load: nothing is acknowledged after, /ready 503, health NOT_SERVING", async () => {
    const dir = scratchDir();
    const ledgerDir = join(dir.path, "ledger");
    const dbPath = join(ledgerDir, "ledger.db");
    let server: TestServer | undefined = await startTestServer({}, { dbPath });
    try {
      const url = server.url;
      let removed = false;
      const answers: Array<{ afterRemoval: boolean; status: number; reason: string | undefined; nonce: string }> = [];
      let acknowledged = 0;
      // 8 clients in a loop; the directory goes away after 40 acknowledged executions.
      const worker = async (w: number) => {
        for (let i = 0; i < 40; i++) {
          const afterRemoval = removed;
          const nonce = `load-${w}-${i}`;
          const answer = await postJson(`${url}/execute`, {
            action: "counter.add",
            payload: { key: "load", delta: 1 },
            nonce,
          });
          answers.push({ afterRemoval, status: answer.status, reason: answer.body?.reason, nonce });
          if (answer.status === 200 && ++acknowledged === 40 && !removed) {
            rmSync(ledgerDir, { recursive: true, force: true });
            removed = true;
          }
        }
      };
      await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
      assert.ok(removed);
      const after = answers.filter((a) => a.afterRemoval);
      assert.ok(after.length > 100);
      assert.deepEqual(
        after.filter((a) => a.status !== 503 || a.reason !== "store_unavailable"),
        [],
        "every execution sent after the removal is refused",
      );
      await assertFailedClosed(url);

      // It stays failed (also for reads) until restart, even with a file back at the path.
      mkdirSync(ledgerDir, { recursive: true });
      writeFileSync(dbPath, "");
      await assertFailedClosed(url);
      rmSync(ledgerDir, { recursive: true, force: true });

      // After a restart the refused nonces are unused: 503 left them unchanged.
      await server.shutdown();
      server = await startTestServer({}, { dbPath });
      const retried = after[0];
      assert.ok(retried !== undefined);
      const answer = await postJson(`${server.url}/execute`, {
        action: "counter.add",
        payload: { key: "load", delta: 1 },
        nonce: retried.nonce,
      });
      assert.equal(answer.status, 200);
      assert.equal(answer.body.replayed, false);
    } finally {
      await server?.shutdown();
      dir.cleanup();
    }
  });

  it("mv of another file over it: refused from the next commit on", async () => {
    const dir = scratchDir();
    const dbPath = join(dir.path, "ledger.db");
    const server = await startTestServer({}, { dbPath });
    try {
      const before = await execute(server, "moved");
      assert.equal(before.status, 200);
      // An operator restores an older copy over the live file.
      const other = join(dir.path, "restored.db");
      new Database(other).close();
      renameSync(other, dbPath);
      // Readiness checks the file itself: no write is needed to notice.
      assert.deepEqual(await getJson(`${server.url}/ready`), {
        status: 503,
        body: { ready: false, reason: "store_unavailable" },
      });
      await assertFailedClosed(server.url);
      // The replay of what was acknowledged before is refused too, not answered from the orphaned file.
      const replay = await postJson(`${server.url}/execute`, {
        action: "counter.add",
        payload: { key: "moved", delta: 1 },
        nonce: `fault-${nonces}`,
      });
      assert.equal(replay.status, 503);
    } finally {
      await server.shutdown();
      dir.cleanup();
    }
  });

  it("rm of its -wal alone: a commit into the unlinked log is not acknowledged", async () => {
    const dir = scratchDir();
    const dbPath = join(dir.path, "ledger.db");
    const server = await startTestServer({}, { dbPath });
    try {
      assert.equal((await execute(server)).status, 200);
      rmSync(`${dbPath}-wal`);
      await assertFailedClosed(server.url);
    } finally {
      await server.shutdown();
      dir.cleanup();
    }
  });
});

describe("a ledger that cannot be written", () => {
  it("chattr +i on the -wal: 503, /ready 503 and NOT_SERVING until a write succeeds again", async (t) => {
    const dir = scratchDir();
    if (!immutableSupported(dir.path)) {
      dir.cleanup();
      t.skip("chattr +i is not supported on this filesystem");
      return;
    }
    const dbPath = join(dir.path, "ledger.db");
    const wal = `${dbPath}-wal`;
    const server = await startTestServer({}, { dbPath });
    try {
      assert.equal((await execute(server, "imm")).status, 200);
      chattr("+i", wal);
      try {
        await assertFailedClosed(server.url);
        // Still unready at the next probe: the probe's own write fails too.
        assert.equal((await getJson(`${server.url}/ready`)).status, 503);
      } finally {
        chattr("-i", wal);
      }
      // The readiness probe writes, commits, and the server is ready again.
      assert.deepEqual(await getJson(`${server.url}/ready`), { status: 200, body: { ready: true } });
      assert.equal(await healthOf(server.url), ServingStatus.SERVING);
      const ok = await execute(server, "imm");
      assert.equal(ok.status, 200);
      assert.equal(ok.body.result.value, 2, "the refused execution changed nothing");
    } finally {
      await server.shutdown();
      dir.cleanup();
    }
  });

  it("a ledger store opened read-only: after its failed write, check() fails (its own probe write fails too)", async () => {
    const dir = scratchDir();
    const dbPath = join(dir.path, "ledger.db");
    try {
      await SqliteLedgerStore.open(dbPath).close();
      const store = SqliteLedgerStore.openReadOnly(dbPath);
      try {
        await store.check();
        await assert.rejects(
          store.recordDenial({
            attemptId: "read-only-1",
            tenantId: "demo",
            nonce: "n",
            action: "echo",
            payloadDigest: Buffer.alloc(32),
            approvalDigest: undefined,
            reason: "action_not_allowed",
            logicalTime: new Date(0),
          }),
          (error: Error & { cause?: { code?: string } }) =>
            error.name === "StoreUnavailableError" && error.cause?.code === "SQLITE_READONLY",
        );
        await assert.rejects(store.check(), { name: "StoreUnavailableError", message: /cannot be written/ });
        await assert.rejects(store.check(), { name: "StoreUnavailableError" });
      } finally {
        await store.close();
      }
    } finally {
      dir.cleanup();
    }
  });

  it("a ledger file that cannot be written at start: the server refuses to start", async (t) => {
    const dir = scratchDir();
    const dbPath = join(dir.path, "ledger.db");
    try {
      await SqliteLedgerStore.open(dbPath).close();
      if (!immutableSupported(dir.path)) {
        t.skip("chattr +i is not supported on this filesystem");
        return;
      }
      chattr("+i", dbPath);
      try {
        await assert.rejects(
          spawnRefused({ OPENEXEC_DB_URL: `sqlite:///${dbPath}` }),
          /server exited with 1 before listening:[\s\S]*openexec: the ledger .*ledger\.db cannot be opened for writing: /,
        );
      } finally {
        chattr("-i", dbPath);
      }
    } finally {
      dir.cleanup();
    }
  });
});

describe("one process per ledger, WAL index in process memory", () => {
  it("chattr +i on the -shm does not crash the server: there is no shared -shm", async (t) => {
    const dir = scratchDir();
    if (!immutableSupported(dir.path)) {
      dir.cleanup();
      t.skip("chattr +i is not supported on this filesystem");
      return;
    }
    const dbPath = join(dir.path, "ledger.db");
    const shm = `${dbPath}-shm`;
    const server = await spawnServer({ OPENEXEC_DB_URL: `sqlite:///${dbPath}` });
    let immutable = false;
    try {
      for (let i = 0; i < 5; i++) assert.equal((await execute(server, "shm")).status, 200);
      if (existsSync(shm)) {
        chattr("+i", shm);
        immutable = true;
      }
      const answers: AnyJson[] = [];
      for (let i = 0; i < 40; i++) {
        answers.push(await execute(server, "shm").catch((error: Error) => ({ status: 0, body: error.message })));
      }
      assert.equal(server.child.signalCode, null, `the server died: ${server.stderr()}`);
      assert.deepEqual(
        answers.map((a) => a.status),
        answers.map(() => 200),
      );
      assert.equal(existsSync(shm), false, "the WAL index is not a shared file");
    } finally {
      if (immutable) chattr("-i", shm);
      server.child.kill("SIGTERM");
      await server.exited;
      dir.cleanup();
    }
  });

  it("a second server on the same ledger refuses to start, with a clear message", async () => {
    const dir = scratchDir();
    const dbPath = join(dir.path, "ledger.db");
    const first = await startTestServer({}, { dbPath });
    try {
      await assert.rejects(
        spawnRefused({ OPENEXEC_DB_URL: `sqlite:///${dbPath}` }),
        /server exited with 1 before listening:[\s\S]*openexec: the ledger .*ledger\.db is in use by another process: one server per ledger file/,
      );
      // The first one is unharmed.
      assert.equal((await execute(first)).status, 200);
    } finally {
      await first.shutdown();
      dir.cleanup();
    }
  });

  it("audit and export refuse a ledger a running server holds (exit 2), and read it once it stops", async () => {
    const dir = scratchDir();
    const dbPath = join(dir.path, "ledger.db");
    const server = await startTestServer({}, { dbPath });
    try {
      assert.equal((await execute(server)).status, 200);
      for (const command of ["audit", "export"]) {
        const { code, stdout, stderr } = await runCli([command, "--db", `sqlite:///${dbPath}`]);
        assert.equal(code, 2, `${command}: ${stdout}${stderr}`);
        assert.equal(stdout, "");
        assert.equal(
          stderr,
          `openexec: the ledger ${dbPath} is in use by a running server, which holds it exclusively; stop the server first\n`,
        );
      }
    } finally {
      await server.shutdown();
    }
    try {
      const audit = await runCli(["audit", "--db", `sqlite:///${dbPath}`]);
      assert.equal(audit.code, 0, audit.stdout + audit.stderr);
      assert.equal(JSON.parse(audit.stdout).ok, true);
    } finally {
      dir.cleanup();
    }
  });
});

describe("ledger file permissions", () => {
  it("a new ledger and its -wal are owner-only (0600)", async () => {
    const dir = scratchDir();
    const dbPath = join(dir.path, "ledger.db");
    const server = await startTestServer({}, { dbPath });
    try {
      assert.equal((await execute(server)).status, 200);
      assert.equal(statSync(dbPath).mode & 0o777, 0o600);
      assert.equal(statSync(`${dbPath}-wal`).mode & 0o777, 0o600);
    } finally {
      await server.shutdown();
      dir.cleanup();
    }
  });

  it("an existing ledger open to others is used, with a warning naming it", async () => {
    const dir = scratchDir();
    const dbPath = join(dir.path, "ledger.db");
    try {
      worldReadableLedger(dbPath);
      const warnings: string[] = [];
      const store = SqliteLedgerStore.open(dbPath, undefined, { onWarning: (message) => warnings.push(message) });
      await store.close();
      assert.deepEqual(warnings, [
        `the ledger ${dbPath} is accessible to group or others (mode 0644); chmod 600 it and its -wal`,
      ]);
      assert.equal(statSync(dbPath).mode & 0o777, 0o644, "the mode is the operator's to change");

      const copy = join(dir.path, "copy.db");
      copyFileSync(dbPath, copy);
      execFileSync("chmod", ["600", copy]);
      const quiet: string[] = [];
      await SqliteLedgerStore.open(copy, undefined, { onWarning: (message) => quiet.push(message) }).close();
      assert.deepEqual(quiet, []);
    } finally {
      dir.cleanup();
    }
  });

  for (const thread of ["on", "off"]) {
    it(`openexec serve on an existing 0644 ledger starts and logs the warning (writer thread ${thread})`, async () => {
      const dir = scratchDir();
      const dbPath = join(dir.path, "ledger.db");
      try {
        worldReadableLedger(dbPath);
        const server = await spawnServer({ OPENEXEC_DB_URL: `sqlite:///${dbPath}`, OPENEXEC_LEDGER_THREAD: thread });
        try {
          assert.equal((await execute(server)).status, 200);
          assert.match(server.stderr(), /the ledger \S+ is accessible to group or others \(mode 0644\); chmod 600 it/);
        } finally {
          server.child.kill("SIGTERM");
          assert.equal(await server.exited, 0);
        }
      } finally {
        dir.cleanup();
      }
    });
  }
});

/** An existing WAL ledger file left readable by group and others (mode 0644), as an earlier tool might. */
function worldReadableLedger(dbPath: string): void {
  const earlier = new Database(dbPath);
  earlier.pragma("journal_mode = WAL");
  earlier.close();
  execFileSync("chmod", ["644", dbPath]);
}

/**
 * The operator's kill switch (openexec freeze / unfreeze): stored in the
 * ledger, reaching a running SQLite server through its control file and every
 * PostgreSQL replica through the shared table.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { ExecutionService } from "../gen/openexec/v1/execution_pb.js";
import { InfoService } from "../gen/openexec/v1/info_pb.js";
import { reasonOf } from "../src/api/connect-errors.js";
import { controlFilePath, maxControlFileBytes, postCommand } from "../src/freeze/control-file.js";
import { FreezeWatch } from "../src/freeze/freeze-watch.js";
import { SqliteLedgerStore } from "../src/ledger/sqlite-store.js";
import { silentLogger } from "../src/log/logger.js";
import { type AnyJson, clientFor, getJson, postJson } from "./support/clients.js";
import { freshSchema, type PostgresSchema, postgresSkipReason } from "./support/postgres.js";
import { generateReceiptKeyPem, type Replica, startReplicas, stopAll } from "./support/replica.js";
import { runCli, type ServerProcess, scratchDir, spawnServer, startTestServer } from "./support/test-server.js";

const skip = await postgresSkipReason();

/** Polls `probe` until it answers true (no deadline: the test's own timeout bounds it). */
async function until(probe: () => Promise<boolean>): Promise<void> {
  while (!(await probe())) await new Promise((resolve) => setTimeout(resolve, 50));
}

async function frozenScopes(url: string): Promise<string[]> {
  const health = await getJson(`${url}/health`);
  return ((health.body.frozen ?? []) as AnyJson[]).map((f) => f.scope);
}

/** The bundle of a recorded attempt: proof that its receipt was signed and logged. */
async function bundleOf(url: string, executionId: string): Promise<AnyJson> {
  return getJson(`${url}/receipts/bundle?exec_id=${executionId}`);
}

describe("freeze (SQLite, server running)", () => {
  it("freeze all: Execute is refused 503 frozen with a denial receipt, replays are still answered, unfreeze restores", async () => {
    const server = await startTestServer();
    const db = `sqlite:///${server.dbPath}`;
    try {
      const before = await postJson(`${server.url}/execute`, { action: "echo", payload: { n: 1 }, nonce: "f-1" });
      assert.equal(before.status, 200);

      const frozen = await runCli(["freeze", "--reason", "incident 42: payments double-charging", "--db", db]);
      assert.equal(frozen.code, 0, frozen.stderr);
      assert.equal(JSON.parse(frozen.stdout).applied_by, "running server");
      // The command was handed over through the control file, which the server took.
      assert.equal(existsSync(`${server.dbPath}.freeze.json`), false);
      await until(async () => (await frozenScopes(server.url)).includes("*"));
      const health = await getJson(`${server.url}/health`);
      assert.equal(health.body.frozen[0].reason, "incident 42: payments double-charging");
      assert.match(health.body.frozen[0].frozen_at, /^\d{4}-\d\d-\d\dT/);
      const rpcHealth = await clientFor(InfoService, "connect-json", server.url).getHealth({});
      assert.deepEqual(
        rpcHealth.frozen.map((f) => f.scope),
        ["*"],
      );

      const refused = await postJson(`${server.url}/execute`, { action: "add", payload: { a: 1, b: 2 }, nonce: "f-2" });
      assert.equal(refused.status, 503);
      assert.equal(refused.body.code, "unavailable");
      assert.equal(refused.body.reason, "frozen");
      assert.match(refused.body.receipt, /^[0-9a-f]{64}$/);
      assert.equal((await bundleOf(server.url, refused.body.execution_id)).status, 200);
      // Over RPC too: unavailable, reason frozen.
      const rpcRefused = await clientFor(ExecutionService, "grpc", server.url)
        .execute({ action: "echo", payload: {}, nonce: "f-3" })
        .then(
          () => undefined,
          (error: unknown) => ConnectError.from(error),
        );
      assert.equal(rpcRefused?.code, Code.Unavailable);
      assert.equal(rpcRefused && reasonOf(rpcRefused), "frozen");

      // A replay is not an execution: still answered from the ledger.
      const replay = await postJson(`${server.url}/execute`, { action: "echo", payload: { n: 1 }, nonce: "f-1" });
      assert.equal(replay.status, 200);
      assert.equal(replay.body.replayed, true);
      assert.equal(replay.body.id, before.body.id);
      // Readiness is not affected: every replica shares the freeze, routing elsewhere would not help.
      assert.equal((await getJson(`${server.url}/ready`)).status, 200);

      const lifted = await runCli(["unfreeze", "--db", db]);
      assert.equal(lifted.code, 0, lifted.stderr);
      await until(async () => (await frozenScopes(server.url)).length === 0);
      // The denied nonce was never reserved: it runs now.
      const after = await postJson(`${server.url}/execute`, { action: "add", payload: { a: 1, b: 2 }, nonce: "f-2" });
      assert.equal(after.status, 200);
      assert.deepEqual(after.body.result, { sum: 3 });
    } finally {
      await server.close();
    }
  });

  it("freeze one action: only that action is refused (ledger in its writer thread)", async () => {
    const server = await startTestServer({ OPENEXEC_LEDGER_THREAD: "on" });
    const db = `sqlite:///${server.dbPath}`;
    try {
      assert.equal((await runCli(["freeze", "--action", "echo", "--reason", "noisy", "--db", db])).code, 0);
      await until(async () => (await frozenScopes(server.url)).includes("echo"));
      const echo = await postJson(`${server.url}/execute`, { action: "echo", payload: {}, nonce: "o-1" });
      assert.equal(echo.status, 503);
      assert.equal(echo.body.reason, "frozen");
      const add = await postJson(`${server.url}/execute`, { action: "add", payload: { a: 2, b: 2 }, nonce: "o-2" });
      assert.equal(add.status, 200);
      assert.equal((await runCli(["unfreeze", "--action", "echo", "--db", db])).code, 0);
      await until(async () => (await frozenScopes(server.url)).length === 0);
      assert.equal(
        (await postJson(`${server.url}/execute`, { action: "echo", payload: {}, nonce: "o-1" })).status,
        200,
      );
    } finally {
      await server.close();
    }
  });

  it("set while no server runs, it is in the ledger: a server started later (writer thread) is frozen from its first request", async () => {
    const dir = scratchDir();
    const path = join(dir.path, "ledger.db");
    const env = { OPENEXEC_DB_URL: `sqlite:///${path}` };
    try {
      const first = await spawnServer(env);
      first.child.kill("SIGTERM");
      assert.equal(await first.exited, 0);
      const set = await runCli(["freeze", "--reason", "maintenance"], env);
      assert.equal(set.code, 0, set.stderr);
      assert.equal(JSON.parse(set.stdout).applied_by, "ledger");

      const server = await spawnServer(env);
      try {
        assert.deepEqual(await frozenScopes(server.url), ["*"]);
        const refused = await postJson(`${server.url}/execute`, { action: "echo", payload: {}, nonce: "l-1" });
        assert.equal(refused.status, 503);
        assert.equal(refused.body.reason, "frozen");
      } finally {
        server.child.kill("SIGTERM");
        await server.exited;
      }
      const lifted = await runCli(["unfreeze"], env);
      assert.equal(JSON.parse(lifted.stdout).lifted, true);
    } finally {
      dir.cleanup();
    }
  });
});

describe("freeze: the SQLite control file", () => {
  it("is applied in order and removed; one writable by group or others is left unapplied", async () => {
    const dir = scratchDir();
    const path = join(dir.path, "ledger.db");
    const store = SqliteLedgerStore.open(path);
    const watch = new FreezeWatch(store, silentLogger(), controlFilePath(path));
    try {
      postCommand(controlFilePath(path), { op: "freeze", scope: "*", reason: "a", frozenAtMs: 1 });
      postCommand(controlFilePath(path), { op: "freeze", scope: "echo", reason: "b", frozenAtMs: 2 });
      postCommand(controlFilePath(path), { op: "unfreeze", scope: "*" });
      assert.equal(statSync(controlFilePath(path)).mode & 0o777, 0o600);
      await watch.poll();
      assert.equal(existsSync(controlFilePath(path)), false);
      assert.deepEqual(await store.freezes(), [{ scope: "echo", reason: "b", frozenAtMs: 2 }]);
      assert.equal(watch.frozenFor("echo")?.reason, "b");
      assert.equal(watch.frozenFor("add"), undefined);

      postCommand(controlFilePath(path), { op: "unfreeze", scope: "echo" });
      chmodSync(controlFilePath(path), 0o666);
      await watch.poll();
      assert.equal(existsSync(controlFilePath(path)), true);
      assert.equal(watch.frozenFor("echo")?.reason, "b");
    } finally {
      await store.close();
      dir.cleanup();
    }
  });
});

describe("freeze: a control file that is not a small regular file (spawned server, main thread must not block)", {
  timeout: 30_000,
}, () => {
  let dir: { path: string; cleanup: () => void };
  let server: ServerProcess;
  let control: string;
  const freezeAll = JSON.stringify([{ op: "freeze", scope: "*", reason: "planted", frozenAtMs: 1 }]);

  before(async () => {
    dir = scratchDir();
    const path = join(dir.path, "ledger.db");
    control = controlFilePath(path);
    server = await spawnServer({ OPENEXEC_DB_URL: `sqlite:///${path}` });
  });
  after(async () => {
    server.child.kill("SIGKILL");
    await server.exited;
    dir.cleanup();
  });

  /** /health answers within a second (a server blocked reading the file would not). */
  async function healthyAndUnfrozen(): Promise<void> {
    const health = await fetch(`${server.url}/health`, { signal: AbortSignal.timeout(1000) });
    assert.equal(health.status, 200);
    assert.equal(((await health.json()) as AnyJson).frozen, undefined);
  }

  /** Removes the control file and lets a poll see it gone (a problem is logged once while it persists). */
  async function removeControl(): Promise<void> {
    rmSync(control);
    await new Promise((resolve) => setTimeout(resolve, 1200));
  }

  /** Waits for the server's poll to log `problem` for the control file, `count` times in all. */
  async function logged(problem: string, count: number): Promise<void> {
    const lines = () =>
      server
        .stderr()
        .split("\n")
        .filter((line) => line.includes("freeze control file not applied") && line.includes(`"problem":"${problem}"`));
    await until(async () => lines().length >= count);
    // Its contents are never logged.
    assert.ok(lines().every((line) => !line.includes("planted")));
  }

  it("a FIFO is refused unread: the server keeps answering", async () => {
    execFileSync("mkfifo", ["-m", "0600", control]);
    await logged("not_regular_file", 1);
    await healthyAndUnfrozen();
    // Still there, and still answering a second later (the next polls do not block either).
    await new Promise((resolve) => setTimeout(resolve, 1200));
    await healthyAndUnfrozen();
    await removeControl();
  });

  it("a symbolic link is not followed, even to a file of freeze commands", async () => {
    const target = join(dir.path, "elsewhere.json");
    writeFileSync(target, freezeAll, { mode: 0o600 });
    symlinkSync(target, control);
    await logged("not_regular_file", 2);
    await healthyAndUnfrozen();
    assert.equal(readFileSync(target, "utf8"), freezeAll);
    await removeControl();
  });

  it(`a file over ${maxControlFileBytes} bytes is refused unread, even one of freeze commands`, async () => {
    writeFileSync(control, freezeAll + " ".repeat(maxControlFileBytes), { mode: 0o600 });
    await logged("too_large", 1);
    await healthyAndUnfrozen();
    assert.equal(existsSync(control), true);
    await removeControl();
  });

  it("an ordinary control file still freezes", async () => {
    postCommand(control, { op: "freeze", scope: "*", reason: "real", frozenAtMs: 2 });
    await until(async () => (await frozenScopes(server.url)).includes("*"));
    assert.equal(existsSync(control), false);
  });
});

describe("freeze: the command line", () => {
  it("refuses bad arguments with exit 2", async () => {
    const dir = scratchDir();
    const env = { OPENEXEC_DB_URL: `sqlite:///${join(dir.path, "ledger.db")}` };
    try {
      const cases: string[][] = [
        ["freeze"], // no --reason
        ["freeze", "--reason", "   "],
        ["freeze", "--reason", "x".repeat(501)],
        ["freeze", "--action", "Not An Action", "--reason", "x"],
        ["freeze", "--reason", "x", "--bogus"],
        ["freeze", "--reason", "x", "extra"],
        ["unfreeze", "--reason", "x"],
        ["freeze", "--reason", "x"], // no ledger at that path
      ];
      const answers = await Promise.all(cases.map((args) => runCli(args, env)));
      for (const [i, { code, stderr }] of answers.entries()) {
        assert.equal(code, 2, `${cases[i]?.join(" ")}: ${stderr}`);
        assert.match(stderr, /^openexec: /);
      }
    } finally {
      dir.cleanup();
    }
  });
});

describe("freeze (PostgreSQL, two replicas)", { skip }, () => {
  let schema: PostgresSchema;
  let replicas: Replica[] = [];

  before(async () => {
    schema = await freshSchema();
    replicas = await startReplicas(2, { OPENEXEC_DB_URL: schema.url, OPENEXEC_RECEIPT_KEY: generateReceiptKeyPem() });
  });
  after(async () => {
    await stopAll(replicas);
    await schema?.drop();
  });

  it("a freeze set with the CLI is seen by every replica, and so is its lifting", async () => {
    const set = await runCli(["freeze", "--action", "add", "--reason", "rollout", "--db", schema.url]);
    assert.equal(set.code, 0, set.stderr);
    for (const [i, replica] of replicas.entries()) {
      await until(async () => (await frozenScopes(replica.url)).includes("add"));
      const refused = await postJson(`${replica.url}/execute`, {
        action: "add",
        payload: { a: 1, b: 1 },
        nonce: `pg-${i}`,
      });
      assert.equal(refused.status, 503);
      assert.equal(refused.body.reason, "frozen");
      assert.equal((await bundleOf(replica.url, refused.body.execution_id)).status, 200);
    }
    const lifted = await runCli(["unfreeze", "--action", "add", "--db", schema.url]);
    assert.equal(JSON.parse(lifted.stdout).lifted, true);
    for (const [i, replica] of replicas.entries()) {
      await until(async () => (await frozenScopes(replica.url)).length === 0);
      const ran = await postJson(`${replica.url}/execute`, {
        action: "add",
        payload: { a: 1, b: 1 },
        nonce: `pg-${i}`,
      });
      assert.equal(ran.status, 200);
    }
  });
});

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Action, anyObjectSchema } from "../src/actions/action.js";
import { builtinActions } from "../src/actions/builtin.js";
import { ActionRegistry } from "../src/actions/registry.js";
import { canonicalJsonDigest } from "../src/json/canonical-digest.js";
import { SqliteLedgerStore } from "../src/ledger/sqlite-store.js";
import { postJson } from "./support/clients.js";
import { scratchDir, startTestServer, type TestServer } from "./support/test-server.js";

/** Test-only actions: a slow one, one that throws, one that never returns. */
let slowRuns = 0;
const slowAction: Action<{ ms: number }> = {
  name: "test.slow",
  effects: "external",
  summary: "waits",
  inputSchema: anyObjectSchema,
  parseInput: (p) => ({ ms: typeof p.ms === "number" ? p.ms : 200 }),
  run: async ({ ms }, context) => {
    slowRuns++;
    await new Promise((resolve) => setTimeout(resolve, ms));
    return { kind: "result", result: { waited: ms, at: context.logicalTime.toISOString() } };
  },
};
let throwRuns = 0;
const throwingAction: Action<unknown> = {
  name: "test.throw",
  effects: "external",
  summary: "throws",
  inputSchema: anyObjectSchema,
  parseInput: (p) => p,
  run: () => {
    throwRuns++;
    throw new Error("secret payload detail");
  },
};
const hangingAction: Action<unknown> = {
  name: "test.hang",
  effects: "external",
  summary: "never returns",
  inputSchema: anyObjectSchema,
  parseInput: (p) => p,
  run: () => new Promise(() => {}),
};
/** A ledger-only action (run before its reservation) that counts its runs. */
let ledgerRuns = 0;
const countingLedgerAction: Action<unknown> = {
  name: "test.ledger_count",
  effects: "ledger",
  summary: "counts its runs",
  inputSchema: anyObjectSchema,
  parseInput: (p) => p,
  run: async () => {
    ledgerRuns++;
    await new Promise((resolve) => setTimeout(resolve, 30));
    return { kind: "result", result: { ran: true } };
  },
};
const badResultAction: Action<{ kind: unknown }> = {
  name: "test.bad_result",
  effects: "external",
  summary: "returns a value JSON cannot carry",
  inputSchema: anyObjectSchema,
  parseInput: (p) => ({ kind: p.kind }),
  run: ({ kind }) => {
    if (kind === "cycle") {
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      return { kind: "result", result: cyclic as never };
    }
    // biome-ignore lint/suspicious/noSparseArray: the point of the test.
    if (kind === "sparse") return { kind: "result", result: [1, , 2] as never };
    if (kind === "date") return { kind: "result", result: new Date(0) as never };
    if (kind === "proto") return { kind: "result", result: JSON.parse('{"a":{"__proto__":{"x":1}}}') };
    return { kind: "result", result: { n: Number.NaN } };
  },
};

function testRegistry(): ActionRegistry {
  const registry = new ActionRegistry();
  for (const action of [
    ...builtinActions,
    slowAction,
    throwingAction,
    hangingAction,
    badResultAction,
    countingLedgerAction,
  ]) {
    registry.register(action);
  }
  return registry.seal();
}

describe("exactly-once semantics", () => {
  let server: TestServer;
  const execute = (body: object) => postJson(`${server.url}/execute`, body);

  before(async () => {
    server = await startTestServer({ OPENEXEC_HANDLER_TIMEOUT_MS: "300" }, { actions: testRegistry() });
  });
  after(() => server.close());

  it("1. runs a new nonce once and stores result and receipt", async () => {
    const { status, body } = await execute({ action: "add", payload: { a: 2, b: 3 }, nonce: "sem-1" });
    assert.equal(status, 200);
    assert.deepEqual(body.result, { sum: 5 });
    assert.equal(body.replayed, false);
    assert.equal(body.status, "executed");
  });

  it("2. a replay with the same fingerprint returns the stored response without running", async () => {
    const before = slowRuns;
    const first = await execute({ action: "test.slow", payload: { ms: 5 }, nonce: "sem-2" });
    // Same payload with its keys in another order: the same canonical fingerprint.
    const again = await execute({ action: "test.slow", payload: { ms: 5 }, nonce: "sem-2" });
    assert.equal(slowRuns, before + 1);
    assert.equal(again.status, 200);
    assert.equal(again.body.replayed, true);
    assert.equal(again.body.id, first.body.id);
    assert.equal(again.body.receipt, first.body.receipt);
    assert.deepEqual(again.body.result, first.body.result);
  });

  it("2b. key order does not change the fingerprint", async () => {
    const first = await execute({ action: "echo", payload: { a: 1, b: { c: 2, d: 3 } }, nonce: "sem-2b" });
    const again = await postJson(
      `${server.url}/execute`,
      '{"nonce":"sem-2b","payload":{"b":{"d":3,"c":2},"a":1},"action":"echo"}',
    );
    assert.equal(again.status, 200);
    assert.equal(again.body.replayed, true);
    assert.equal(again.body.id, first.body.id);
  });

  it("3. the same nonce with another payload or action is a conflict that reveals nothing", async () => {
    const first = await execute({ action: "echo", payload: { v: "secret-1" }, nonce: "sem-3" });
    assert.equal(first.status, 200);
    for (const body of [
      { action: "echo", payload: { v: "secret-2" }, nonce: "sem-3" },
      { action: "add", payload: { a: 1, b: 1 }, nonce: "sem-3" },
    ]) {
      const conflict = await execute(body);
      assert.equal(conflict.status, 409);
      assert.equal(conflict.body.code, "already_exists");
      assert.equal(conflict.body.reason, "nonce_reused");
      assert.equal(conflict.headers.get("openexec-reason"), "nonce_reused");
      const text = JSON.stringify(conflict.body);
      assert.ok(!text.includes("secret-1") && !text.includes(first.body.id) && !text.includes(first.body.receipt));
    }
  });

  it("3b. the same nonce with the same payload but another action is a conflict, and nothing runs", async () => {
    const payload = { ms: 1 };
    const first = await execute({ action: "echo", payload, nonce: "sem-3b" });
    assert.equal(first.status, 200);
    const before = slowRuns;
    // Only the action differs: the payload digest matches, so the action alone must make it a conflict.
    const conflict = await execute({ action: "test.slow", payload, nonce: "sem-3b" });
    assert.equal(conflict.status, 409, JSON.stringify(conflict.body));
    assert.equal(conflict.body.code, "already_exists");
    assert.equal(conflict.body.reason, "nonce_reused");
    assert.equal(conflict.headers.get("openexec-reason"), "nonce_reused");
    assert.equal(slowRuns, before, "the other action never ran");
    const text = JSON.stringify(conflict.body);
    assert.ok(!text.includes(first.body.id) && !text.includes(first.body.receipt));
    // The nonce still belongs to the first request.
    const again = await execute({ action: "echo", payload, nonce: "sem-3b" });
    assert.equal(again.body.replayed, true);
    assert.equal(again.body.id, first.body.id);
  });

  it("4. duplicates that arrive while the first runs wait for it; the handler runs once", async () => {
    const before = slowRuns;
    const requests = Array.from({ length: 8 }, () =>
      execute({ action: "test.slow", payload: { ms: 150 }, nonce: "sem-4" }),
    );
    const answers = await Promise.all(requests);
    assert.equal(slowRuns, before + 1);
    assert.ok(answers.every((a) => a.status === 200));
    assert.equal(new Set(answers.map((a) => a.body.id)).size, 1);
    assert.equal(answers.filter((a) => a.body.replayed === false).length, 1);
  });

  it("4b. concurrent duplicates of a ledger-only action run its handler once in this process", async () => {
    // Ledger-only handlers run before their reservation; only the in-process
    // one-run-per-nonce map keeps duplicates from running them again.
    const before = ledgerRuns;
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => execute({ action: "test.ledger_count", payload: {}, nonce: "sem-4b" })),
    );
    assert.equal(ledgerRuns, before + 1);
    assert.ok(answers.every((a) => a.status === 200));
    assert.equal(new Set(answers.map((a) => a.body.id)).size, 1);
    assert.equal(answers.filter((a) => a.body.replayed === false).length, 1);
  });

  it("64 concurrent duplicates of counter.add apply the delta exactly once", async () => {
    const requests = Array.from({ length: 64 }, () =>
      execute({ action: "counter.add", payload: { key: "once", delta: 5 }, nonce: "counter-dup-1" }),
    );
    const answers = await Promise.all(requests);
    assert.ok(answers.every((a) => a.status === 200 && a.body.result.value === 5));
    assert.equal(answers.filter((a) => a.body.replayed === false).length, 1);
    const next = await execute({ action: "counter.add", payload: { key: "once", delta: 1 }, nonce: "counter-dup-2" });
    assert.deepEqual(next.body.result, { key: "once", value: 6 });
  });

  it("a handler that throws is recorded as failed; its replays return the same failure", async () => {
    const before = throwRuns;
    const first = await execute({ action: "test.throw", payload: {}, nonce: "fail-1" });
    assert.equal(first.status, 200);
    assert.equal(first.body.status, "failed");
    assert.equal(first.body.reason, "handler_error");
    assert.equal(first.body.result, null);
    assert.ok(!JSON.stringify(first.body).includes("secret payload detail"));
    const again = await execute({ action: "test.throw", payload: {}, nonce: "fail-1" });
    assert.equal(throwRuns, before + 1);
    assert.equal(again.body.replayed, true);
    assert.equal(again.body.reason, "handler_error");
    assert.equal(again.body.receipt, first.body.receipt);
    // The server stays up and ready.
    assert.equal((await fetch(`${server.url}/ready`)).status, 200);
  });

  it("a handler past its time limit is recorded as failed with handler_timeout", async () => {
    const first = await execute({ action: "test.hang", payload: {}, nonce: "hang-1" });
    assert.equal(first.status, 200);
    assert.equal(first.body.status, "failed");
    assert.equal(first.body.reason, "handler_timeout");
    const again = await execute({ action: "test.hang", payload: {}, nonce: "hang-1" });
    assert.equal(again.body.replayed, true);
    assert.equal(again.body.reason, "handler_timeout");
  });

  for (const kind of ["nan", "cycle", "sparse", "date", "proto"]) {
    it(`a result JSON cannot carry (${kind}) is recorded as failed with result_invalid`, async () => {
      const first = await execute({ action: "test.bad_result", payload: { kind }, nonce: `bad-result-${kind}` });
      assert.equal(first.status, 200);
      assert.equal(first.body.status, "failed");
      assert.equal(first.body.reason, "result_invalid");
    });
  }

  it("handlers see a fixed logical time that replays repeat", async () => {
    const first = await execute({ action: "test.slow", payload: { ms: 1 }, nonce: "time-1" });
    await new Promise((resolve) => setTimeout(resolve, 20));
    const again = await execute({ action: "test.slow", payload: { ms: 1 }, nonce: "time-1" });
    assert.equal(again.body.result.at, first.body.result.at);
  });

  it("a counter overflowing 2^53 fails the execution and leaves the counter unchanged", async () => {
    const max = Number.MAX_SAFE_INTEGER;
    await execute({ action: "counter.add", payload: { key: "big", delta: max }, nonce: "big-1" });
    const over = await execute({ action: "counter.add", payload: { key: "big", delta: 1 }, nonce: "big-2" });
    assert.equal(over.body.status, "failed");
    assert.equal(over.body.reason, "counter_overflow");
    const back = await execute({ action: "counter.add", payload: { key: "big", delta: -1 }, nonce: "big-3" });
    assert.deepEqual(back.body.result, { key: "big", value: max - 1 });
  });

  it("stores what it answered: result, digests and receipt", async () => {
    const { body } = await execute({ action: "echo", payload: { z: [1, "two", null] }, nonce: "stored-1" });
    // The server holds its ledger file exclusively: read it through the server's own store.
    const record = await server.store.find("demo", "stored-1");
    assert.ok(record !== undefined && record.status === "executed");
    assert.equal(record.executionId, body.id);
    assert.deepEqual(record.result, { echo: { z: [1, "two", null] } });
    assert.deepEqual(record.payloadDigest, canonicalJsonDigest({ z: [1, "two", null] }));
    assert.equal(record.receipt.digest.toString("hex"), body.receipt);
  });
});

describe("durability across restarts", () => {
  it("a restart on the same database keeps every nonce and counter", async () => {
    const dir = scratchDir();
    const dbPath = `${dir.path}/ledger.db`;
    try {
      let server = await startTestServer({}, { dbPath });
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) {
        const { body } = await postJson(`${server.url}/execute`, {
          action: "counter.add",
          payload: { key: "restart", delta: 1 },
          nonce: `restart-${i}`,
        });
        ids.push(body.id);
      }
      await server.shutdown();
      server = await startTestServer({}, { dbPath });
      try {
        for (let i = 0; i < 20; i++) {
          const { status, body } = await postJson(`${server.url}/execute`, {
            action: "counter.add",
            payload: { key: "restart", delta: 1 },
            nonce: `restart-${i}`,
          });
          assert.equal(status, 200);
          assert.equal(body.replayed, true);
          assert.equal(body.id, ids[i]);
          assert.equal(body.result.value, i + 1);
        }
        const fresh = await postJson(`${server.url}/execute`, {
          action: "counter.add",
          payload: { key: "restart", delta: 1 },
          nonce: "restart-new",
        });
        assert.equal(fresh.body.result.value, 21);
      } finally {
        await server.shutdown();
      }
    } finally {
      dir.cleanup();
    }
  });

  it("5. a reservation left unfinished by a crash never runs; replays answer 409 interrupted", async () => {
    const dir = scratchDir();
    const dbPath = `${dir.path}/ledger.db`;
    try {
      // A process that reserved and then died before completing.
      const crashed = SqliteLedgerStore.open(dbPath);
      const payload = { key: "crash", delta: 7 };
      assert.deepEqual(
        await crashed.reserve({
          executionId: "00000000-0000-4000-8000-000000000001",
          tenantId: "demo",
          nonce: "crash-1",
          action: "counter.add",
          payloadDigest: canonicalJsonDigest(payload),
          approval: undefined,
          logicalTime: new Date(0),
        }),
        { kind: "reserved" },
      );
      await crashed.close();

      const server = await startTestServer({}, { dbPath });
      try {
        const replay = await postJson(`${server.url}/execute`, { action: "counter.add", payload, nonce: "crash-1" });
        assert.equal(replay.status, 409);
        assert.equal(replay.body.reason, "interrupted");
        const probe = await postJson(`${server.url}/execute`, {
          action: "counter.add",
          payload: { key: "crash", delta: 0 },
          nonce: "crash-probe",
        });
        assert.equal(probe.body.result.value, 0, "the interrupted delta was never applied");
      } finally {
        await server.shutdown();
      }
      const store = SqliteLedgerStore.open(dbPath);
      const record = await store.find("demo", "crash-1");
      await store.close();
      assert.equal(record?.status, "interrupted");
    } finally {
      dir.cleanup();
    }
  });
});

import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ExecutionService } from "../gen/openexec/v1/execution_pb.js";
import { WorkerLedger } from "../src/ledger/worker/worker-ledger.js";
import { evidenceFromBundle, verifyReceiptOffline } from "../src/receipts/verify-offline.js";
import { clientFor, postJson } from "./support/clients.js";
import { scratchDir, startTestServer } from "./support/test-server.js";

/** The server as deployed: the ledger in its writer thread (OPENEXEC_LEDGER_THREAD's default). */
const threaded = { OPENEXEC_LEDGER_THREAD: "on", OPENEXEC_ALLOWED_ACTIONS: "echo,counter.add" };

describe("the ledger in its writer thread", () => {
  it("executes, replays, refuses conflicts and records denials, over REST and gRPC", async () => {
    const dir = scratchDir();
    const dbPath = join(dir.path, "ledger.db");
    const server = await startTestServer(threaded, { dbPath });
    try {
      assert.ok(server.store instanceof WorkerLedger, "the ledger is served from its writer thread");
      const execute = (body: object) => postJson(`${server.url}/execute`, body);
      const first = await execute({ action: "echo", payload: { m: 1 }, nonce: "w-1" });
      assert.equal(first.status, 200);
      const again = await clientFor(ExecutionService, "grpc", server.url).execute({
        action: "echo",
        payload: { m: 1 },
        nonce: "w-1",
      });
      assert.equal(again.replayed, true);
      assert.equal(again.id, first.body.id);
      assert.equal(again.receipt, first.body.receipt);
      const conflict = await execute({ action: "echo", payload: { m: 2 }, nonce: "w-1" });
      assert.equal(conflict.status, 409);
      assert.equal(conflict.body.reason, "nonce_reused");

      const denied = await execute({ action: "add", payload: { a: 1, b: 1 }, nonce: "w-d" });
      assert.equal(denied.status, 403);
      const recorded = await server.store.findById(denied.body.execution_id);
      assert.ok(recorded?.status === "denied");
      assert.equal(recorded.receipt.digest.toString("hex"), denied.body.receipt);

      // 64 concurrent duplicates of counter.add: the delta is applied once.
      const answers = await Promise.all(
        Array.from({ length: 64 }, () =>
          execute({ action: "counter.add", payload: { key: "k", delta: 5 }, nonce: "w-c" }),
        ),
      );
      assert.ok(answers.every((a) => a.status === 200 && a.body.result.value === 5));
      assert.equal(answers.filter((a) => a.body.replayed === false).length, 1);

      // The checkpoint is signed in the writer thread; the bundle verifies offline.
      const pem = await (await fetch(`${server.url}/receipts/key.pem`)).text();
      const bundle = await (await fetch(`${server.url}/receipts/bundle?exec_id=${first.body.id}`)).json();
      const evidence = evidenceFromBundle(pem, bundle);
      assert.ok(typeof evidence !== "string");
      assert.deepEqual(verifyReceiptOffline(evidence).problems, []);
    } finally {
      await server.shutdown();
    }
    // Everything acknowledged survives the stop.
    const reopened = await startTestServer(threaded, { dbPath });
    try {
      const replay = await postJson(`${reopened.url}/execute`, {
        action: "counter.add",
        payload: { key: "k", delta: 5 },
        nonce: "w-c",
      });
      assert.equal(replay.body.replayed, true);
      const probe = await postJson(`${reopened.url}/execute`, {
        action: "counter.add",
        payload: { key: "k", delta: 0 },
        nonce: "w-p",
      });
      assert.equal(probe.body.result.value, 5);
    } finally {
      await reopened.close();
    }
    dir.cleanup();
  });

  it("a second server on the same ledger is refused with the writer thread's reason", async () => {
    const dir = scratchDir();
    const dbPath = join(dir.path, "ledger.db");
    const server = await startTestServer(threaded, { dbPath });
    try {
      await assert.rejects(startTestServer(threaded, { dbPath }), { name: "LedgerInUseError", message: /in use/ });
    } finally {
      await server.close();
      dir.cleanup();
    }
  });

  for (const thread of ["on", "off"]) {
    it(`a ledger removed under the server: replays and writes 503 store_unavailable, not ready (writer thread ${thread})`, async () => {
      const dir = scratchDir();
      const dbPath = join(dir.path, "sub", "ledger.db");
      const server = await startTestServer({ ...threaded, OPENEXEC_LEDGER_THREAD: thread }, { dbPath });
      try {
        assert.equal(
          (await postJson(`${server.url}/execute`, { action: "echo", payload: {}, nonce: "g-1" })).status,
          200,
        );
        rmSync(join(dir.path, "sub"), { recursive: true, force: true });
        // Before anything writes or asks for readiness: a replay is not answered from a ledger that is gone.
        const replay = await postJson(`${server.url}/execute`, { action: "echo", payload: {}, nonce: "g-1" });
        assert.equal(replay.status, 503);
        assert.equal(replay.body.reason, "store_unavailable");
        const after = await postJson(`${server.url}/execute`, { action: "echo", payload: {}, nonce: "g-2" });
        assert.equal(after.status, 503);
        assert.equal(after.body.reason, "store_unavailable");
        assert.equal((await fetch(`${server.url}/ready`)).status, 503);
      } finally {
        await server.shutdown();
        dir.cleanup();
      }
    });
  }
});

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Action, anyObjectSchema } from "../actions/action.js";
import { builtinActions } from "../actions/builtin.js";
import { ActionRegistry } from "../actions/registry.js";
import { demoApprovalGate } from "../approval/approval-gate.js";
import type { Ledger } from "../ledger/ledger.js";
import { SqliteLedgerStore } from "../ledger/sqlite-store.js";
import { silentLogger } from "../log/logger.js";
import { type ExecuteCommand, Executor } from "./executor.js";
import { defaultRequestLimits } from "./request-limits.js";

let externalRuns = 0;
const external: Action<{ fail: boolean }> = {
  name: "test.external",
  effects: "external",
  summary: "acts outside the ledger",
  inputSchema: anyObjectSchema,
  parseInput: (payload) => ({ fail: payload.fail === true }),
  run: async ({ fail }) => {
    externalRuns++;
    if (fail) throw new Error("the world said no");
    return { kind: "result", result: { done: true } };
  },
};

/** The executor on its own, over a ledger on a real SQLite file: no HTTP, no transport. */
describe("Executor", () => {
  const dir = mkdtempSync(join(tmpdir(), "openexec-executor-"));
  let ledger: Ledger;
  let executor: Executor;
  const command = (overrides: Partial<ExecuteCommand>): ExecuteCommand => ({
    action: "echo",
    payload: {},
    nonce: "n",
    approvalArtifact: new Uint8Array(0),
    ...overrides,
  });

  before(() => {
    ledger = SqliteLedgerStore.open(join(dir, "ledger.db"));
    const actions = new ActionRegistry();
    for (const action of [...builtinActions, external]) actions.register(action);
    executor = new Executor({
      store: ledger,
      actions: actions.seal(),
      allowedActions: new Set(["echo", "counter.add", "test.external"]),
      approvals: demoApprovalGate,
      tenantId: "demo",
      limits: defaultRequestLimits,
      logger: silentLogger(),
    });
  });
  after(async () => {
    await ledger.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("refuses a malformed request before anything is stored, in its order: shape, then action", async () => {
    await assert.rejects(executor.execute(command({ nonce: "bad nonce", action: "nope" })), {
      reason: "nonce_invalid",
    });
    await assert.rejects(executor.execute(command({ nonce: "ok", payload: undefined })), { reason: "payload_invalid" });
    await assert.rejects(executor.execute(command({ nonce: "ok", action: "nope" })), { reason: "unknown_action" });
    await assert.rejects(executor.execute(command({ nonce: "ok", action: "counter.add", payload: { key: 1 } })), {
      reason: "action_input_invalid",
    });
    assert.equal(await ledger.logSize(), 0);
  });

  it("records a denial (with a receipt) for an action outside the allow-list, and keeps the nonce free", async () => {
    const denied = await executor.execute(command({ action: "add", payload: { a: 1, b: 2 }, nonce: "d-1" })).then(
      () => assert.fail("not denied"),
      (error: { reason: string; attempt?: { executionId: string } }) => error,
    );
    assert.equal(denied.reason, "action_not_allowed");
    const recorded = await ledger.findById(denied.attempt?.executionId ?? "");
    assert.equal(recorded?.status, "denied");
    assert.equal(await ledger.find("demo", "d-1"), undefined);
  });

  it("runs once, replays the stored outcome, and refuses the nonce for another payload", async () => {
    const first = await executor.execute(command({ payload: { m: 1 }, nonce: "r-1" }));
    assert.equal(first.replayed, false);
    assert.equal(first.execution.status, "executed");
    const again = await executor.execute(command({ payload: { m: 1 }, nonce: "r-1" }));
    assert.equal(again.replayed, true);
    assert.equal(again.execution.executionId, first.execution.executionId);
    await assert.rejects(executor.execute(command({ payload: { m: 2 }, nonce: "r-1" })), { reason: "nonce_reused" });
  });

  it("an external action is reserved before it runs; its failure is recorded and replayed, never re-run", async () => {
    const before = externalRuns;
    const failed = await executor.execute(command({ action: "test.external", payload: { fail: true }, nonce: "x-1" }));
    assert.equal(failed.execution.status, "failed");
    assert.equal(failed.execution.status === "failed" && failed.execution.reason, "handler_error");
    const replay = await executor.execute(command({ action: "test.external", payload: { fail: true }, nonce: "x-1" }));
    assert.equal(replay.replayed, true);
    assert.equal(externalRuns, before + 1);
  });

  it("draining refuses new executions and resolves once the running ones are recorded", async () => {
    const running = executor.execute(command({ action: "test.external", payload: {}, nonce: "x-2" }));
    const drained = executor.drain();
    await assert.rejects(executor.execute(command({ nonce: "late" })), { reason: "draining" });
    await drained;
    assert.equal((await running).execution.status, "executed");
    assert.equal((await ledger.find("demo", "x-2"))?.status, "executed");
  });
});

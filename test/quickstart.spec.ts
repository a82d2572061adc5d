import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { fromBinary } from "@bufbuild/protobuf";
import { Authorization, ReceiptSchema } from "../gen/openexec/v1/receipt_pb.js";
import { type ServerProcess, scratchDir, spawnServer } from "./support/test-server.js";

const exec = promisify(execFile);

/**
 * The reference quickstart, word for word, except that the port is the one the
 * test server got. Each command runs through a real shell and real curl.
 */
const quickstart = {
  health: "curl http://localhost:5000/health",
  execute: `curl -X POST http://localhost:5000/execute \\
  -H "Content-Type: application/json" \\
  -d '{
    "action":"echo",
    "payload":{"msg":"hello"},
    "nonce":"unique-1"
  }'`,
  verify: `curl -X POST http://localhost:5000/receipts/verify \\
  -H "Content-Type: application/json" \\
  -d '{"exec_id":"<id>","result":"<result_json>","receipt":"<hash>"}'`,
};

describe("reference quickstart", () => {
  const dir = scratchDir();
  let server: ServerProcess;
  let port: string;

  before(async () => {
    // The documented default database, relative to the working directory.
    server = await spawnServer({}, ["--port", "0"], dir.path);
    port = new URL(server.url).port;
  });
  after(async () => {
    server.child.kill("SIGTERM");
    assert.equal(await server.exited, 0);
    dir.cleanup();
  });

  const curl = async (command: string) => {
    const { stdout } = await exec("sh", ["-c", command.replaceAll("localhost:5000", `localhost:${port}`)]);
    return JSON.parse(stdout);
  };

  it("answers every step as documented", async () => {
    const health = await curl(quickstart.health);
    // The receipt key is generated on first start: its id and fingerprint differ per run.
    assert.match(health.receipt_key.fingerprint, /^[0-9a-f]{64}$/);
    assert.equal(health.receipt_key.key_id, health.receipt_key.fingerprint.slice(0, 16));
    assert.equal(health.receipt_key.algorithm, "ed25519");
    delete health.receipt_key;
    assert.deepEqual(health, {
      status: "healthy",
      exec_mode: "demo",
      signature_verification: "disabled",
      restriction: "open",
      warning: "No execution allow-list configured",
      tenant_id: "demo",
      actions: ["add", "counter.add", "echo"],
      action_summaries: {
        add: 'adds numbers: {"a": 1, "b": 2} gives {"sum": 3}',
        "counter.add": 'adds to a durable counter: {"key": "k", "delta": 1} gives {"key": "k", "value": total}',
        echo: 'returns {"echo": payload}',
      },
    });

    const first = await curl(quickstart.execute);
    assert.equal(first.action, "echo");
    assert.deepEqual(first.result, { echo: { msg: "hello" } });
    // Demo mode approves every registered action, as the original answers; it says how.
    assert.equal(first.approved, true);
    assert.equal(first.authorization, "demo");
    assert.equal(
      fromBinary(ReceiptSchema, Buffer.from(first.signed_receipt.payload, "base64")).authorization,
      Authorization.DEMO,
    );
    assert.equal(first.replayed, false);
    assert.match(first.id, /^[0-9a-f-]{36}$/);
    assert.match(first.receipt, /^[0-9a-f]{64}$/);

    // Replay: same result, no re-execution.
    const replay = await curl(quickstart.execute);
    assert.equal(replay.replayed, true);
    assert.equal(replay.id, first.id);
    assert.equal(replay.receipt, first.receipt);
    assert.equal(replay.approved, true);
    assert.equal(replay.authorization, "demo");
    assert.deepEqual(replay.result, first.result);

    // Receipt verification in the original's form: result as a string of JSON text.
    const filled = quickstart.verify
      .replace("<id>", first.id)
      .replace('"<result_json>"', JSON.stringify(JSON.stringify(first.result)))
      .replace("<hash>", first.receipt);
    assert.deepEqual(await curl(filled), { valid: true });
    const forged = quickstart.verify
      .replace("<id>", first.id)
      .replace('"<result_json>"', JSON.stringify(JSON.stringify({ echo: { msg: "forged" } })))
      .replace("<hash>", first.receipt);
    assert.deepEqual(await curl(forged), { valid: false });
    // The literal placeholders name no execution: valid false, not an error.
    assert.deepEqual(await curl(quickstart.verify), { valid: false });
  });
});

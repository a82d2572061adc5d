import assert from "node:assert/strict";
import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fromBinary, fromJson } from "@bufbuild/protobuf";
import Database from "better-sqlite3";
import { SignedEnvelopeSchema } from "../gen/openexec/v1/envelope_pb.js";
import { ReceiptSchema } from "../gen/openexec/v1/receipt_pb.js";
import { TransparencyLogService } from "../gen/openexec/v1/transparency_log_pb.js";
import { evidenceFromBundle, verifyReceiptOffline } from "../src/receipts/verify-offline.js";
import { parsePublicKeyPem } from "../src/signing/ed25519-keys.js";
import { verifySignedCheckpoint } from "../src/tlog/checkpoint.js";
import { leafHash, verifyConsistency, verifyInclusion } from "../src/tlog/merkle-tree.js";
import { type AnyJson, clientFor, getJson, postJson } from "./support/clients.js";
import { runCli, scratchDir, startTestServer, type TestServer } from "./support/test-server.js";

async function publicKeyOf(server: TestServer): Promise<string> {
  return (await getJson(`${server.url}/receipts/key`)).body.public_key_pem;
}

async function bundleOf(server: TestServer, id: string): Promise<AnyJson> {
  const { status, body } = await getJson(`${server.url}/receipts/bundle?exec_id=${id}`);
  assert.equal(status, 200);
  return body;
}

/** The latest checkpoint once it covers leaf `logIndex` (checkpoints are published by a timer). */
async function checkpointCovering(url: string, logIndex: number): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const note = await (await fetch(`${url}/log/checkpoint`)).text();
    if (Number(note.split("\n")[1]) > logIndex || attempt > 200) return note;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function offline(pem: string, bundle: unknown) {
  const evidence = evidenceFromBundle(pem, bundle);
  assert.ok(typeof evidence !== "string", String(evidence));
  return verifyReceiptOffline(evidence);
}

describe("signed receipts in a transparency log", () => {
  let server: TestServer;
  let pem: string;
  before(async () => {
    // Checkpoints are signed by a timer, never by a read: a short interval keeps the test quick.
    server = await startTestServer({ OPENEXEC_CHECKPOINT_INTERVAL_MS: "50" });
    pem = await publicKeyOf(server);
  });
  after(() => server.close());
  const execute = (body: object) => postJson(`${server.url}/execute`, body);

  it("every execution answer carries a receipt signed by the key /health names", async () => {
    const { body } = await execute({ action: "echo", payload: { k: 1 }, nonce: "sig-1" });
    const health = (await getJson(`${server.url}/health`)).body;
    const key = parsePublicKeyPem(pem);
    assert.equal(health.receipt_key.key_id, key.keyId);
    assert.equal(body.signed_receipt.signatures[0].key_id, key.keyId);
    // Valid offline needs the log evidence as well: the checkpoint and proof of the receipt's bundle.
    const fromBundle = evidenceFromBundle(pem, await bundleOf(server, body.id));
    assert.ok(typeof fromBundle !== "string", String(fromBundle));
    const verdict = verifyReceiptOffline({
      publicKeyPem: pem,
      signedReceipt: fromJson(SignedEnvelopeSchema, body.signed_receipt),
      result: body.result,
      checkpoint: fromBundle.checkpoint,
      inclusionProof: fromBundle.inclusionProof,
    });
    assert.deepEqual(verdict.problems, []);
    assert.equal(verdict.receipt?.executionId, body.id);
  });

  it("a bundle verifies offline: signature, result, checkpoint, inclusion", async () => {
    const { body } = await execute({ action: "add", payload: { a: 2, b: 2 }, nonce: "bundle-1" });
    const bundle = await bundleOf(server, body.id);
    assert.equal(bundle.result, undefined, "a bundle does not hand out results");
    const verdict = offline(pem, { ...bundle, result: body.result });
    assert.equal(verdict.valid, true, verdict.problems.join("; "));
  });

  it("a changed result, a forged receipt or a tampered proof is invalid, offline and on the server", async () => {
    const { body } = await execute({ action: "echo", payload: { v: "real" }, nonce: "forge-1" });
    const bundle = await bundleOf(server, body.id);
    assert.equal(offline(pem, { ...bundle, result: { echo: { v: "fake" } } }).valid, false);
    const verify = (claim: object) => postJson(`${server.url}/receipts/verify`, claim);
    assert.deepEqual((await verify({ exec_id: body.id, result: body.result, receipt: body.receipt })).body, {
      valid: true,
    });
    assert.deepEqual(
      (await verify({ exec_id: body.id, result: { echo: { v: "fake" } }, receipt: body.receipt })).body,
      {
        valid: false,
      },
    );
    // A forged receipt: same bytes with one flipped, signature kept.
    const payload = Buffer.from(bundle.signed_receipt.payload, "base64");
    payload[payload.length - 1] = (payload[payload.length - 1] ?? 0) ^ 1;
    const forged = { ...bundle, signed_receipt: { ...bundle.signed_receipt, payload: payload.toString("base64") } };
    assert.equal(offline(pem, forged).valid, false);
    // The original's receipt was SHA-256("id:result"): anyone could compute it. Not here.
    const naive = (await import("node:crypto"))
      .createHash("sha256")
      .update(`${body.id}:${JSON.stringify(body.result)}`)
      .digest("hex");
    assert.deepEqual((await verify({ exec_id: body.id, result: body.result, receipt: naive })).body, { valid: false });
    // A proof with one hash changed.
    const proof = bundle.inclusion_proof;
    if (proof.hashes.length > 0) {
      const hashes = [...proof.hashes];
      hashes[0] = `${hashes[0].slice(0, 63)}${hashes[0].endsWith("0") ? "1" : "0"}`;
      assert.equal(offline(pem, { ...bundle, inclusion_proof: { ...proof, hashes } }).valid, false);
    }
  });

  it("a receipt whose signature alone is altered is invalid, offline, on the server and in audit", async () => {
    const { body } = await execute({ action: "echo", payload: { v: "sig" }, nonce: "sig-only-1" });
    const bundle = await bundleOf(server, body.id);
    const sig = Buffer.from(bundle.signed_receipt.signatures[0].sig, "base64");
    sig[3] = (sig[3] ?? 0) ^ 0x01;
    const altered = {
      ...bundle,
      signed_receipt: {
        ...bundle.signed_receipt,
        signatures: [{ ...bundle.signed_receipt.signatures[0], sig: sig.toString("base64") }],
      },
    };
    const verdict = offline(pem, altered);
    assert.equal(verdict.valid, false);
    assert.deepEqual(verdict.problems, ["the receipt signature does not verify"]);
    // The same alteration in the ledger: the server's own verification refuses it. The server holds
    // its file exclusively: stop it, alter the file, and start it again on the same ledger.
    const first = server;
    await first.shutdown();
    const db = new Database(first.dbPath);
    db.prepare("UPDATE executions SET receipt_signature = ? WHERE execution_id = ?").run(sig, body.id);
    db.close();
    const restarted = await startTestServer({}, { dbPath: first.dbPath });
    server = { ...restarted, close: () => restarted.shutdown().then(() => first.close()) };
    assert.deepEqual(
      (
        await postJson(`${server.url}/receipts/verify`, {
          exec_id: body.id,
          result: body.result,
          receipt: body.receipt,
        })
      ).body,
      { valid: false },
    );
  });

  it("denials have logged, verifiable receipts too", async () => {
    const restricted = await startTestServer({ OPENEXEC_ALLOWED_ACTIONS: "echo" });
    try {
      const denied = await postJson(`${restricted.url}/execute`, {
        action: "add",
        payload: { a: 1, b: 1 },
        nonce: "d-1",
      });
      assert.equal(denied.status, 403);
      const bundle = await bundleOf(restricted, denied.body.execution_id);
      const verdict = offline(await publicKeyOf(restricted), { ...bundle, result: null });
      assert.equal(verdict.valid, true, verdict.problems.join("; "));
      assert.equal(verdict.receipt?.reason, "action_not_allowed");
    } finally {
      await restricted.close();
    }
  });

  it("inclusion and consistency proofs verify for every tree size up to 40, and fail when a hash changes", async () => {
    const checkpoints: Array<{ size: number; root: Buffer }> = [];
    const key = parsePublicKeyPem(pem);
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) {
      const { body } = await execute({ action: "counter.add", payload: { key: "tree", delta: 1 }, nonce: `tree-${i}` });
      ids.push(body.id);
      // The timer publishes a checkpoint covering this receipt within its interval.
      const logIndex = Number(fromBinary(ReceiptSchema, Buffer.from(body.signed_receipt.payload, "base64")).logIndex);
      const note = await checkpointCovering(server.url, logIndex);
      const origin = note.split("\n")[0] ?? "";
      const checkpoint = verifySignedCheckpoint(
        note,
        { name: origin, publicKey: key.key, publicKeyRaw: key.raw },
        origin,
      );
      assert.ok(checkpoint !== undefined, "every checkpoint is signed by the receipt key");
      checkpoints.push({ size: checkpoint.size, root: checkpoint.rootHash });
    }
    for (const older of checkpoints) {
      for (const newer of checkpoints.filter((c) => c.size >= older.size)) {
        const { status, body } = await getJson(
          `${server.url}/log/consistency?old_size=${older.size}&new_size=${newer.size}`,
        );
        assert.equal(status, 200);
        const hashes = body.hashes.map((h: string) => Buffer.from(h, "hex"));
        assert.ok(verifyConsistency(older.size, newer.size, older.root, newer.root, hashes));
        if (hashes.length > 0) {
          hashes[hashes.length - 1][0] ^= 1;
          assert.ok(!verifyConsistency(older.size, newer.size, older.root, newer.root, hashes));
        }
      }
    }
    for (const id of ids) {
      const bundle = await bundleOf(server, id);
      const proof = bundle.inclusion_proof;
      const leaf = leafHash(Buffer.from(bundle.signed_receipt.payload, "base64"));
      const root = checkpoints.find((c) => c.size === proof.tree_size)?.root;
      assert.ok(root !== undefined);
      const hashes = proof.hashes.map((h: string) => Buffer.from(h, "hex"));
      assert.ok(verifyInclusion(leaf, proof.log_index, proof.tree_size, hashes, root));
      hashes[0][5] ^= 0x40;
      assert.ok(!verifyInclusion(leaf, proof.log_index, proof.tree_size, hashes, root));
    }
  });

  it("proof questions out of range are 400, unknown ids 404", async () => {
    assert.equal(
      (await getJson(`${server.url}/log/consistency?old_size=5&new_size=2`)).body.reason,
      "log_range_invalid",
    );
    assert.equal((await getJson(`${server.url}/log/consistency?old_size=x&new_size=2`)).status, 400);
    const missing = await getJson(`${server.url}/receipts/bundle?exec_id=nope`);
    assert.equal(missing.status, 404);
    assert.equal(missing.body.reason, "execution_not_found");
  });

  it("the log service answers over gRPC with the generated client", async () => {
    const client = clientFor(TransparencyLogService, "grpc", server.url);
    const checkpoint = await client.getCheckpoint({});
    assert.ok(checkpoint.treeSize > 0n);
    assert.ok(checkpoint.checkpoint.startsWith(`${checkpoint.origin}\n${checkpoint.treeSize}\n`));
    const { body } = await execute({ action: "echo", payload: {}, nonce: "rpc-log-1" });
    const inclusion = await client.getInclusionProof({ execId: body.id });
    assert.ok(inclusion.proof !== undefined && inclusion.proof.treeSize > inclusion.proof.logIndex);
    const bundle = await client.getReceiptBundle({ execId: body.id });
    assert.equal(bundle.signedReceipt?.signatures.length, 1);
  });
});

describe("receipts from elsewhere", () => {
  it("a receipt signed by another executor's key, or from another log, is invalid", async () => {
    const a = await startTestServer();
    const b = await startTestServer();
    const sharedKey = scratchDir();
    try {
      const fromB = await postJson(`${b.url}/execute`, { action: "echo", payload: {}, nonce: "x-1" });
      const bundleB = await bundleOf(b, fromB.body.id);
      assert.equal(offline(await publicKeyOf(a), bundleB).valid, false, "another key");
      assert.deepEqual(
        (
          await postJson(`${a.url}/receipts/verify`, {
            exec_id: fromB.body.id,
            result: fromB.body.result,
            receipt: fromB.body.receipt,
          })
        ).body,
        { valid: false },
      );

      // Two logs under one key: a checkpoint of one cannot prove a receipt of the other.
      const { generateKeyPairSync } = await import("node:crypto");
      const keyPem = generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString();
      const c = await startTestServer({ OPENEXEC_RECEIPT_KEY: keyPem, OPENEXEC_LOG_ORIGIN: "example.com/log-c" });
      const d = await startTestServer({ OPENEXEC_RECEIPT_KEY: keyPem, OPENEXEC_LOG_ORIGIN: "example.com/log-d" });
      try {
        const fromC = await postJson(`${c.url}/execute`, { action: "echo", payload: {}, nonce: "y-1" });
        const fromD = await postJson(`${d.url}/execute`, { action: "echo", payload: {}, nonce: "y-1" });
        const bundleC = await bundleOf(c, fromC.body.id);
        const bundleD = await bundleOf(d, fromD.body.id);
        const pem = await publicKeyOf(c);
        assert.equal(offline(pem, bundleC).valid, true);
        const mixed = offline(pem, {
          ...bundleC,
          checkpoint: bundleD.checkpoint,
          inclusion_proof: bundleD.inclusion_proof,
        });
        assert.equal(mixed.valid, false, "another log");
      } finally {
        await c.close();
        await d.close();
      }
    } finally {
      await a.close();
      await b.close();
      sharedKey.cleanup();
    }
  });
});

describe("one ledger, one log", () => {
  it("refuses to start on a ledger whose log another receipt key or origin signed", async () => {
    const dir = scratchDir();
    try {
      const dbPath = join(dir.path, "ledger.db");
      const first = await startTestServer({}, { dbPath });
      await postJson(`${first.url}/execute`, { action: "echo", payload: {}, nonce: "c-1" });
      await first.shutdown();
      const { generateKeyPairSync } = await import("node:crypto");
      const otherKey = generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString();
      await assert.rejects(startTestServer({ OPENEXEC_RECEIPT_KEY: otherKey }, { dbPath }), /another receipt key/);
      await assert.rejects(startTestServer({ OPENEXEC_LOG_ORIGIN: "example.com/other" }, { dbPath }), /another origin/);
      const again = await startTestServer({}, { dbPath });
      await again.shutdown();
    } finally {
      dir.cleanup();
    }
  });
});

describe("offline verification and audit with the server gone", () => {
  it("verify-receipt, audit and export work on what the server left; audit names tampered rows", async () => {
    const dir = scratchDir();
    try {
      const server = await startTestServer({}, { dbPath: join(dir.path, "ledger.db") });
      const ids: string[] = [];
      for (let i = 0; i < 6; i++) {
        const { body } = await postJson(`${server.url}/execute`, {
          action: "add",
          payload: { a: i, b: 1 },
          nonce: `gone-${i}`,
        });
        ids.push(body.id);
      }
      writeFileSync(join(dir.path, "executor.pub.pem"), await publicKeyOf(server));
      writeFileSync(join(dir.path, "bundle.json"), JSON.stringify(await bundleOf(server, ids[2] ?? "")));
      await server.shutdown();

      const verify = await runCli([
        "verify-receipt",
        "--key",
        join(dir.path, "executor.pub.pem"),
        "--bundle",
        join(dir.path, "bundle.json"),
      ]);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
      assert.equal(JSON.parse(verify.stdout).valid, true);

      const ledger = join(dir.path, "ledger.db");
      const audit = await runCli(["audit", "--db", `sqlite:///${ledger}`]);
      assert.equal(audit.code, 0, audit.stdout + audit.stderr);
      assert.equal(JSON.parse(audit.stdout).leaves, 6);

      const exported = await runCli(["export", "--db", `sqlite:///${ledger}`]);
      assert.equal(exported.code, 0);
      const lines = exported.stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line));
      assert.equal(lines[0].type, "log");
      assert.equal(lines.filter((l) => l.type === "receipt").length, 6);
      assert.ok(lines.some((l) => l.type === "checkpoint" && l.tree_size === 6));

      // Each tampering, on its own copy of the ledger, is found and named.
      const tamperings: Array<{ name: string; sql: string; expect: RegExp; id?: string | undefined }> = [
        {
          name: "edit a result",
          sql: `UPDATE executions SET result_json = '{"sum":99}' WHERE execution_id = '${ids[3]}'`,
          expect: /result/,
          id: ids[3],
        },
        {
          name: "edit a nonce",
          sql: `UPDATE executions SET nonce = 'other' WHERE execution_id = '${ids[1]}'`,
          expect: /nonce/,
          id: ids[1],
        },
        {
          name: "delete a row",
          sql: `DELETE FROM executions WHERE execution_id = '${ids[4]}'`,
          expect: /missing/,
          id: ids[4],
        },
        {
          name: "reorder two leaves",
          sql: "UPDATE log_leaves SET leaf_index = 100 WHERE leaf_index = 0; UPDATE log_leaves SET leaf_index = 0 WHERE leaf_index = 1; UPDATE log_leaves SET leaf_index = 1 WHERE leaf_index = 100;",
          expect: /log leaf|log index/,
        },
        {
          name: "delete a leaf",
          sql: "DELETE FROM log_leaves WHERE leaf_index = 5",
          expect: /checkpoint covers|leaf 5/,
        },
        {
          name: "edit a checkpoint",
          sql: "UPDATE checkpoints SET root_hash = zeroblob(32) WHERE tree_size = 6",
          expect: /checkpoint/,
        },
        {
          name: "replace a signature",
          sql: `UPDATE executions SET receipt_signature = zeroblob(64) WHERE execution_id = '${ids[2]}'`,
          expect: /signature/,
          id: ids[2],
        },
      ];
      for (const tampering of tamperings) {
        const copy = join(dir.path, `tampered-${tampering.name.replaceAll(" ", "-")}.db`);
        copyFileSync(ledger, copy);
        copyFileSync(`${ledger}.receipt-key.pem`, `${copy}.receipt-key.pem`);
        const db = new Database(copy);
        db.exec(tampering.sql);
        db.close();
        const result = await runCli(["audit", "--db", `sqlite:///${copy}`]);
        assert.equal(result.code, 1, `${tampering.name}: ${result.stdout}${result.stderr}`);
        const report = JSON.parse(result.stdout);
        assert.equal(report.ok, false);
        assert.match(report.first_divergence.problem, tampering.expect, tampering.name);
        if (tampering.id !== undefined) assert.equal(report.first_divergence.id, tampering.id, tampering.name);
      }
    } finally {
      dir.cleanup();
    }
  });
});

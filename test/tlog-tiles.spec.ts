import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { ReceiptSchema } from "../gen/openexec/v1/receipt_pb.js";
import { leafHash, rootFromLeafHashes } from "../src/tlog/merkle-tree.js";
import { packageRoot } from "../src/version.js";
import { postJson } from "./support/clients.js";
import { scratchDir, startTestServer, type TestServer } from "./support/test-server.js";

const python = "/usr/bin/python3";
const verifier = join(packageRoot, "test/python/tlog_tiles_verify.py");

/** Why the Python verifier cannot run here, or undefined when it can. */
function pythonUnavailable(): string | undefined {
  const probe = spawnSync(python, ["-c", "import cryptography"], { encoding: "utf8" });
  return probe.status === 0
    ? undefined
    : "python3 with the cryptography module is needed (Debian: python3-cryptography)";
}

interface Executed {
  readonly logIndex: number;
  readonly receipt: Buffer;
}

describe("the log as C2SP tiles", () => {
  let server: TestServer;
  const executed: Executed[] = [];
  let origin = "";
  let size = 0;
  const dir = scratchDir();
  const pemPath = join(dir.path, "executor.pub.pem");

  before(async () => {
    server = await startTestServer({ OPENEXEC_LOG_ENTRIES: "on", OPENEXEC_CHECKPOINT_INTERVAL_MS: "50" });
    // 300 receipts: one full level-0 tile, a partial one, and a partial level-1 tile.
    for (let start = 0; start < 300; start += 25) {
      const answers = await Promise.all(
        Array.from({ length: 25 }, (_, i) =>
          postJson(`${server.url}/execute`, { action: "echo", payload: { i: start + i }, nonce: `t-${start + i}` }),
        ),
      );
      for (const answer of answers) {
        assert.equal(answer.status, 200);
        const receipt = Buffer.from(answer.body.signed_receipt.payload, "base64");
        executed.push({ logIndex: Number(fromBinary(ReceiptSchema, receipt).logIndex), receipt });
      }
    }
    executed.sort((a, b) => a.logIndex - b.logIndex);
    for (let attempt = 0; attempt < 200; attempt++) {
      const note = await (await fetch(`${server.url}/log/checkpoint`)).text();
      [origin = "", size = 0] = [note.split("\n")[0], Number(note.split("\n")[1])];
      if (size === 300) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(size, 300);
    writeFileSync(pemPath, await (await fetch(`${server.url}/receipts/key.pem`)).text());
  });
  after(async () => {
    await server.close();
    dir.cleanup();
  });

  const get = (path: string) => fetch(`${server.url}/log/${path}`);

  it("serves full and partial hash tiles whose hashes are the receipts' leaves, with immutable cache headers", async () => {
    const full = await get("tile/0/000");
    assert.equal(full.status, 200);
    assert.equal(full.headers.get("content-type"), "application/octet-stream");
    assert.equal(full.headers.get("cache-control"), "public, max-age=31536000, immutable");
    const fullBytes = Buffer.from(await full.arrayBuffer());
    assert.equal(fullBytes.length, 256 * 32);
    const partial = Buffer.from(await (await get("tile/0/001.p/44")).arrayBuffer());
    assert.equal(partial.length, 44 * 32);
    const leaves = [...Array.from({ length: 256 }, (_, i) => fullBytes.subarray(i * 32, (i + 1) * 32))];
    for (let i = 0; i < 44; i++) leaves.push(partial.subarray(i * 32, (i + 1) * 32));
    leaves.forEach((hash, i) => {
      assert.deepEqual(Buffer.from(hash), leafHash((executed[i] as Executed).receipt), `leaf ${i}`);
    });
    // A narrower partial tile is a prefix of the wider one; level 1 holds the full tile's root.
    assert.deepEqual(Buffer.from(await (await get("tile/0/001.p/3")).arrayBuffer()), partial.subarray(0, 96));
    const level1 = Buffer.from(await (await get("tile/1/000.p/1")).arrayBuffer());
    assert.deepEqual(level1, rootFromLeafHashes(leaves.slice(0, 256)));
  });

  it("answers 404 tile_not_found for tiles the log does not have, and for non-canonical paths", async () => {
    for (const path of [
      "tile/0/001",
      "tile/0/001.p/45",
      "tile/0/002.p/1",
      "tile/1/000",
      "tile/0/1",
      "tile/0/000.p/0",
    ]) {
      const answer = await get(path);
      assert.equal(answer.status, 404, path);
      assert.equal(((await answer.json()) as { reason: string }).reason, "tile_not_found", path);
    }
  });

  it("serves entry bundles that hash to the level-0 tile, when enabled", async () => {
    const bundle = Buffer.from(await (await get("tile/entries/001.p/44")).arrayBuffer());
    const entries: Buffer[] = [];
    for (let offset = 0; offset < bundle.length; ) {
      const length = bundle.readUInt16BE(offset);
      entries.push(bundle.subarray(offset + 2, offset + 2 + length));
      offset += 2 + length;
    }
    assert.equal(entries.length, 44);
    for (const [i, entry] of entries.entries()) assert.deepEqual(entry, (executed[256 + i] as Executed).receipt);
  });

  it("an independent Python verifier, written from the C2SP specs, proves inclusion from the checkpoint and tiles alone", async (t) => {
    const missing = pythonUnavailable();
    if (missing !== undefined) {
      if (process.env.CI === "true") assert.fail(missing);
      t.skip(missing);
      return;
    }
    // Asynchronously: the server answering the verifier runs in this process.
    const verify = (entry: Executed, receipt = entry.receipt) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        const args = [
          verifier,
          `${server.url}/log`,
          origin,
          pemPath,
          String(entry.logIndex),
          receipt.toString("base64"),
        ];
        execFile(python, args, { encoding: "utf8", timeout: 30_000 }, (error, stdout, stderr) =>
          resolve({ status: error === null ? 0 : typeof error.code === "number" ? error.code : null, stdout, stderr }),
        );
      });
    for (const index of [0, 5, 255, 256, 299]) {
      const result = await verify(executed[index] as Executed);
      assert.equal(result.status, 0, result.stdout + result.stderr);
      assert.equal(JSON.parse(result.stdout).included, true);
    }
    // One changed byte of a receipt: not included.
    const entry = executed[7] as Executed;
    const changed = Buffer.from(entry.receipt);
    changed[changed.length - 1] = (changed[changed.length - 1] as number) ^ 1;
    const refused = await verify(entry, changed);
    assert.equal(refused.status, 1);
    assert.equal(JSON.parse(refused.stdout).included, false);
  });
});

describe("reads never write", () => {
  it("GETs serve the stored checkpoint; a receipt no checkpoint covers yet is 503 checkpoint_pending after a bounded wait", async () => {
    // A long interval: only the start-up checkpoint (size 0) is signed while this test runs.
    const server = await startTestServer({ OPENEXEC_CHECKPOINT_INTERVAL_MS: "60000" });
    try {
      const answer = await postJson(`${server.url}/execute`, { action: "echo", payload: {}, nonce: "r-1" });
      assert.equal(answer.status, 200);
      for (let i = 0; i < 3; i++) {
        const note = await (await fetch(`${server.url}/log/checkpoint`)).text();
        assert.equal(note.split("\n")[1], "0", "a read does not sign a checkpoint");
      }
      const started = Date.now();
      const bundle = await fetch(`${server.url}/receipts/bundle?exec_id=${answer.body.id}`);
      assert.equal(bundle.status, 503);
      assert.equal(((await bundle.json()) as { reason: string }).reason, "checkpoint_pending");
      assert.ok(Date.now() - started >= 1900, "it waited for a checkpoint first");
      assert.equal(await server.store.logSize(), 1);
      assert.equal((await server.store.latestCheckpoint())?.treeSize, 0);
    } finally {
      await server.close();
    }
  });
});

import assert from "node:assert/strict";
import { createHash, generateKeyPairSync } from "node:crypto";
import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import Database from "better-sqlite3";
import { ExecutionService } from "../gen/openexec/v1/execution_pb.js";
import { reasonOf } from "../src/api/connect-errors.js";
import { receiptPublicKey } from "../src/cli/ledger-access.js";
import { verifyReceiptCommand } from "../src/cli/verify-receipt-command.js";
import { signApproval } from "../src/client/sign-approval.js";
import { auditLedger } from "../src/evidence/audit-ledger.js";
import { SqliteLedgerStore } from "../src/ledger/sqlite-store.js";
import { verifyReceiptSignature } from "../src/receipts/receipt.js";
import { parsePublicKeyPem, privateKeySeedFromPem } from "../src/signing/ed25519-keys.js";
import { type AnyJson, clientFor, getJson, postJson } from "./support/clients.js";
import {
  runCli,
  runCommandInProcess,
  scratchDir,
  spawnServer,
  startTestServer,
  type TestServer,
} from "./support/test-server.js";

const sha256hex = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

async function publicKeyOf(url: string): Promise<string> {
  return (await getJson(`${url}/receipts/key`)).body.public_key_pem;
}

async function bundleOf(url: string, id: string): Promise<AnyJson> {
  const { status, body } = await getJson(`${url}/receipts/bundle?exec_id=${id}`);
  assert.equal(status, 200, JSON.stringify(body));
  return body;
}

/** Runs `sql` on the ledger file through its own connection (the server is stopped). */
function tamper(path: string, sql: string): void {
  const db = new Database(path);
  try {
    db.exec(sql);
  } finally {
    db.close();
  }
}

function storedRow(path: string, id: string): AnyJson {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare("SELECT * FROM executions WHERE execution_id = ?").get(id);
  } finally {
    db.close();
  }
}

async function rpcError(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    return error;
  }
  assert.fail("expected the call to fail");
}

describe("server-side verification: only an executed receipt is valid", () => {
  it("failed, denied and interrupted receipts are valid:false over REST and RPC, whatever result is claimed", async () => {
    const dir = scratchDir();
    const dbPath = join(dir.path, "ledger.db");
    const env = { OPENEXEC_ALLOWED_ACTIONS: "echo,counter.add" };
    let server: TestServer | undefined;
    try {
      server = await startTestServer(env, { dbPath });
      const execute = (body: object) => postJson(`${server?.url}/execute`, body);
      const big = await execute({
        action: "counter.add",
        payload: { key: "big", delta: Number.MAX_SAFE_INTEGER },
        nonce: "c-1",
      });
      assert.equal(big.body.status, "executed");
      const failed = await execute({ action: "counter.add", payload: { key: "big", delta: 1 }, nonce: "c-2" });
      assert.equal(failed.body.status, "failed", JSON.stringify(failed.body));
      assert.equal(failed.body.reason, "counter_overflow");
      const denied = await execute({ action: "add", payload: { a: 1, b: 1 }, nonce: "d-1" });
      assert.equal(denied.status, 403);
      await server.shutdown();
      server = undefined;

      // A reservation an earlier process left pending: the next start records it as interrupted.
      const executed = storedRow(dbPath, big.body.id);
      const db = new Database(dbPath);
      db.prepare(
        `INSERT INTO executions (execution_id, tenant_id, nonce, action, payload_digest, logical_time_ms, status)
         VALUES ('left-pending', ?, 'p-1', 'echo', ?, ?, 'pending')`,
      ).run(executed.tenant_id, Buffer.alloc(32, 7), Date.now());
      db.close();
      server = await startTestServer(env, { dbPath });
      // The server holds its ledger exclusively: read the row through its own store.
      const interruptedRecord = await server.store.findById("left-pending");
      assert.ok(interruptedRecord !== undefined);
      const interrupted = {
        status: interruptedRecord.status,
        receipt_digest: interruptedRecord.status === "pending" ? Buffer.alloc(0) : interruptedRecord.receipt.digest,
      };
      assert.equal(interrupted.status, "interrupted");

      const url = server.url;
      const client = clientFor(ExecutionService, "connect-json", url);
      const cases = [
        { name: "failed", id: failed.body.id as string, receipt: failed.body.receipt as string },
        { name: "denied", id: denied.body.execution_id as string, receipt: denied.body.receipt as string },
        {
          name: "interrupted",
          id: "left-pending",
          receipt: Buffer.from(interrupted.receipt_digest).toString("hex"),
        },
      ];
      for (const { name, id, receipt } of cases) {
        for (const result of [undefined, null, "null", { key: "big", value: 1 }]) {
          const claim = { exec_id: id, receipt, ...(result === undefined ? {} : { result }) };
          const answer = await postJson(`${url}/receipts/verify`, claim);
          assert.equal(answer.status, 200);
          assert.deepEqual(answer.body, { valid: false }, `${name}, result ${JSON.stringify(result)}`);
        }
        assert.equal((await client.verifyReceipt({ execId: id, receipt })).valid, false, `${name}, RPC, no result`);
        const withNull = await client.verifyReceipt({
          execId: id,
          receipt,
          result: { kind: { case: "nullValue", value: 0 } },
        });
        assert.equal(withNull.valid, false, `${name}, RPC, null result`);
        // The offline check of the same receipt still holds: that is where a denial or failure is checked.
        const bundle = await bundleOf(url, id);
        writeFileSync(join(dir.path, "key.pem"), await publicKeyOf(url));
        writeFileSync(join(dir.path, `${name}.json`), JSON.stringify(bundle));
        const offline = await runCli([
          "verify-receipt",
          "--key",
          join(dir.path, "key.pem"),
          "--bundle",
          join(dir.path, `${name}.json`),
        ]);
        assert.equal(offline.code, 0, `${name}: ${offline.stdout}${offline.stderr}`);
        assert.equal(JSON.parse(offline.stdout).status, name);
      }
      // The executed receipt still verifies.
      const valid = await postJson(`${url}/receipts/verify`, {
        exec_id: big.body.id,
        receipt: big.body.receipt,
        result: big.body.result,
      });
      assert.deepEqual(valid.body, { valid: true });
    } finally {
      await server?.shutdown();
      dir.cleanup();
    }
  });
});

describe("server-side verification: the log and the stored bytes", () => {
  /** Two echo executions on a ledger in `dir`, then the server is stopped. */
  async function twoExecutions(dbPath: string) {
    const server = await startTestServer({}, { dbPath });
    try {
      const x = await postJson(`${server.url}/execute`, { action: "echo", payload: { v: "x" }, nonce: "x" });
      const y = await postJson(`${server.url}/execute`, { action: "echo", payload: { v: "y" }, nonce: "y" });
      assert.equal(x.status, 200);
      assert.equal(y.status, 200);
      return { x: x.body, y: y.body, pem: await publicKeyOf(server.url) };
    } finally {
      await server.shutdown();
    }
  }

  const verify = (url: string, execution: AnyJson) =>
    postJson(`${url}/receipts/verify`, { exec_id: execution.id, receipt: execution.receipt, result: execution.result });

  it("a receipt whose log leaf was changed is not in the signed log: valid:false, though digest and signature hold", async () => {
    const dir = scratchDir();
    const dbPath = join(dir.path, "ledger.db");
    let server: TestServer | undefined;
    try {
      const { x, y, pem } = await twoExecutions(dbPath);
      // The log's tree lives in its tiles: change y's leaf hash there (leaf 1 of the level-0 tile).
      // x's inclusion proof against the signed checkpoint runs through it; y's own does not.
      const db = new Database(dbPath);
      const tile = db.prepare("SELECT hashes FROM log_tiles WHERE level = 0 AND tile_index = 0").get() as {
        hashes: Buffer;
      };
      tile.hashes.fill(0, 32, 64);
      db.prepare("UPDATE log_tiles SET hashes = ? WHERE level = 0 AND tile_index = 0").run(tile.hashes);
      db.close();
      // Digest and signature of the stored row are untouched: only the inclusion check can refuse it.
      const row = storedRow(dbPath, x.id);
      assert.equal(sha256hex(row.receipt), Buffer.from(row.receipt_digest).toString("hex"));
      assert.ok(verifyReceiptSignature(parsePublicKeyPem(pem), row.receipt, row.receipt_signature));

      server = await startTestServer({}, { dbPath });
      assert.deepEqual((await verify(server.url, x)).body, { valid: false });
      const client = clientFor(ExecutionService, "connect-binary", server.url);
      const rpc = await client.verifyReceipt({
        execId: x.id,
        receipt: x.receipt,
        result: { kind: { case: "stringValue", value: JSON.stringify(x.result) } },
      });
      assert.equal(rpc.valid, false);
      // A receipt whose proof does not pass through the changed hash still verifies.
      assert.deepEqual((await verify(server.url, y)).body, { valid: true });
    } finally {
      await server?.shutdown();
      dir.cleanup();
    }
  });

  it("a row given another row's validly signed receipt, its digest kept: valid:false", async () => {
    const dir = scratchDir();
    const dbPath = join(dir.path, "ledger.db");
    let server: TestServer | undefined;
    try {
      const { x, y } = await twoExecutions(dbPath);
      tamper(
        dbPath,
        `UPDATE executions SET
           receipt = (SELECT receipt FROM executions WHERE execution_id = '${y.id}'),
           receipt_signature = (SELECT receipt_signature FROM executions WHERE execution_id = '${y.id}')
         WHERE execution_id = '${x.id}'`,
      );
      const row = storedRow(dbPath, x.id);
      assert.equal(Buffer.from(row.receipt_digest).toString("hex"), x.receipt, "the digest is kept");
      server = await startTestServer({}, { dbPath });
      assert.deepEqual((await verify(server.url, x)).body, { valid: false });
      const client = clientFor(ExecutionService, "connect-json", server.url);
      const rpc = await client.verifyReceipt({
        execId: x.id,
        receipt: x.receipt,
        result: { kind: { case: "stringValue", value: JSON.stringify(x.result) } },
      });
      assert.equal(rpc.valid, false);
      assert.deepEqual((await verify(server.url, y)).body, { valid: true });
    } finally {
      await server?.shutdown();
      dir.cleanup();
    }
  });
});

describe("offline verification: what was not checked is not valid", () => {
  it("verify-receipt requires exactly one signature, a checkpoint and an inclusion proof", async () => {
    const dir = scratchDir();
    const server = await startTestServer({}, { dbPath: join(dir.path, "ledger.db") });
    try {
      const { body } = await postJson(`${server.url}/execute`, { action: "echo", payload: { v: 1 }, nonce: "o-1" });
      const bundle = await bundleOf(server.url, body.id);
      const key = join(dir.path, "key.pem");
      writeFileSync(key, await publicKeyOf(server.url));
      const run = async (name: string, content: unknown, extra: string[] = []) => {
        const file = join(dir.path, `${name}.json`);
        writeFileSync(file, JSON.stringify(content));
        // The first verdict through the real CLI, the others through the same command in this process.
        const result =
          name === "whole"
            ? await runCli(["verify-receipt", "--key", key, "--bundle", file, ...extra])
            : await runCommandInProcess(verifyReceiptCommand, ["--key", key, "--bundle", file, ...extra]);
        return { code: result.code, verdict: result.stdout === "" ? undefined : JSON.parse(result.stdout) };
      };

      const whole = await run("whole", bundle);
      assert.equal(whole.code, 0);
      assert.equal(whole.verdict.valid, true);

      const { inclusion_proof: _proof, ...noProof } = bundle;
      const withoutProof = await run("no-proof", noProof);
      assert.equal(withoutProof.code, 1);
      assert.equal(withoutProof.verdict.valid, false);
      assert.deepEqual(withoutProof.verdict.problems, [
        "no inclusion proof was given: the log inclusion is not checked",
      ]);
      assert.equal(withoutProof.verdict.checked.inclusion, false);

      const { checkpoint: _checkpoint, ...noCheckpoint } = bundle;
      const withoutCheckpoint = await run("no-checkpoint", noCheckpoint);
      assert.equal(withoutCheckpoint.code, 1);
      assert.deepEqual(withoutCheckpoint.verdict.problems, [
        "no checkpoint was given: the log inclusion is not checked",
      ]);

      const { checkpoint: _c, inclusion_proof: _p, ...bare } = bundle;
      const receiptOnly = await run("bare", bare);
      assert.equal(receiptOnly.code, 1);
      assert.equal(receiptOnly.verdict.problems.length, 2);

      // --receipt with the result but nothing about the log: still not valid.
      writeFileSync(join(dir.path, "signed.json"), JSON.stringify(body.signed_receipt));
      writeFileSync(join(dir.path, "result.json"), JSON.stringify(body.result));
      const parts = await runCli([
        "verify-receipt",
        "--key",
        key,
        "--receipt",
        join(dir.path, "signed.json"),
        "--result",
        join(dir.path, "result.json"),
      ]);
      assert.equal(parts.code, 1, parts.stdout + parts.stderr);
      assert.equal(JSON.parse(parts.stdout).valid, false);

      // A second signature entry, garbage: the envelope must carry exactly one.
      const garbage = { key_id: "0000000000000000", sig: Buffer.alloc(64, 1).toString("base64") };
      for (const signatures of [
        [...bundle.signed_receipt.signatures, garbage],
        [garbage, ...bundle.signed_receipt.signatures],
        [...bundle.signed_receipt.signatures, ...bundle.signed_receipt.signatures],
      ]) {
        const extraSignature = await run("two-signatures", {
          ...bundle,
          signed_receipt: { ...bundle.signed_receipt, signatures },
        });
        assert.equal(extraSignature.code, 1);
        assert.equal(extraSignature.verdict.valid, false);
        assert.deepEqual(extraSignature.verdict.problems, ["signatures must hold exactly one entry, not 2"]);
      }
    } finally {
      await server.close();
      dir.cleanup();
    }
  });
});

describe("a replay never serves a result the ledger no longer signs", () => {
  it("result_json edited while the server was stopped: the replay is 503 store_unavailable on REST and RPC", async () => {
    const dir = scratchDir();
    const dbPath = join(dir.path, "ledger.db");
    const env = { OPENEXEC_DB_URL: `sqlite:///${dbPath}` };
    const first = await spawnServer(env);
    let second: Awaited<ReturnType<typeof spawnServer>> | undefined;
    try {
      const rest = { action: "echo", payload: { msg: "original" }, nonce: "r-1" };
      const restAnswer = await postJson(`${first.url}/execute`, rest);
      assert.equal(restAnswer.status, 200);
      const rpcRequest = { action: "add", payload: { a: 1, b: 2 }, nonce: "r-2" };
      const rpcAnswer = await clientFor(ExecutionService, "grpc", first.url).execute(rpcRequest);
      first.child.kill("SIGTERM");
      assert.equal(await first.exited, 0);

      tamper(
        dbPath,
        `UPDATE executions SET result_json = '{"echo":{"msg":"TAMPERED-1"}}' WHERE execution_id = '${restAnswer.body.id}';
         UPDATE executions SET result_json = '{"sum":99.25}' WHERE execution_id = '${rpcAnswer.id}';`,
      );
      second = await spawnServer(env);
      const replay = await postJson(`${second.url}/execute`, rest);
      assert.equal(replay.status, 503, JSON.stringify(replay.body));
      assert.equal(replay.body.reason, "store_unavailable");
      assert.equal(JSON.stringify(replay.body).includes("TAMPERED"), false);
      for (const protocol of ["grpc", "connect-json"] as const) {
        const error = await rpcError(clientFor(ExecutionService, protocol, second.url).execute(rpcRequest));
        assert.equal(Code[error.code], Code[Code.Unavailable], protocol);
        assert.equal(reasonOf(error), "store_unavailable", protocol);
      }
      // The error log names the rows, never their content.
      const log = second.stderr();
      assert.ok(log.includes(restAnswer.body.id), log);
      assert.ok(log.includes(rpcAnswer.id), log);
      assert.match(log, /stored result does not match/);
      assert.equal(log.includes("TAMPERED"), false);
      assert.equal(log.includes("99.25"), false);
      // An untouched execution still replays.
      const fresh = { action: "echo", payload: { msg: "fresh" }, nonce: "r-3" };
      assert.equal((await postJson(`${second.url}/execute`, fresh)).status, 200);
      const again = await postJson(`${second.url}/execute`, fresh);
      assert.equal(again.status, 200);
      assert.equal(again.body.replayed, true);
      // The stored rows are left as found (read once the server has let go of its ledger).
      second.child.kill("SIGTERM");
      assert.equal(await second.exited, 0);
      assert.equal(storedRow(dbPath, restAnswer.body.id).result_json, '{"echo":{"msg":"TAMPERED-1"}}');
    } finally {
      first.child.kill("SIGKILL");
      second?.child.kill("SIGTERM");
      await second?.exited;
      dir.cleanup();
    }
  });
});

describe("audit: every rule names the row that breaks it", () => {
  function keyPair() {
    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    const publicPem = publicKey.export({ format: "pem", type: "spki" }).toString();
    const privatePem = privateKey.export({ format: "pem", type: "pkcs8" }).toString();
    return { publicPem, seed: privateKeySeedFromPem(privatePem), keyId: parsePublicKeyPem(publicPem).keyId };
  }

  it("deleted checkpoints, edited counters, a cleared approval id, unlogged rows and an edited tenant fail audit", async () => {
    const dir = scratchDir();
    const ledger = join(dir.path, "ledger.db");
    const governance = keyPair();
    const server = await startTestServer(
      {
        OPENEXEC_MODE: "clawshield",
        CLAWSHIELD_TENANT_ID: "acme",
        CLAWSHIELD_PUBLIC_KEY: governance.publicPem,
        OPENEXEC_ALLOWED_ACTIONS: "echo,counter.add",
      },
      { dbPath: ledger },
    );
    const ids: Record<string, string> = {};
    try {
      const run = async (name: string, action: string, payload: Record<string, unknown>) => {
        const { artifactBase64 } = await signApproval({
          privateKey: governance.seed,
          keyId: governance.keyId,
          tenantId: "acme",
          action,
          payload: payload as never,
          nonce: name,
          lifetimeSeconds: 300,
        });
        const answer = await postJson(`${server.url}/execute`, {
          action,
          payload,
          nonce: name,
          approval_artifact: artifactBase64,
        });
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        ids[name] = answer.body.id;
      };
      await run("echo-1", "echo", { m: 1 });
      await run("apples-1", "counter.add", { key: "apples", delta: 2 });
      await run("pears-1", "counter.add", { key: "pears", delta: 5 });
      // A checkpoint of 3 leaves (the timer publishes it; reads never sign); shutdown signs the one of all 6.
      let note = "";
      for (let attempt = 0; attempt < 200 && !/\n3\n/.test(note); attempt++) {
        if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 20));
        note = await (await fetch(`${server.url}/log/checkpoint`)).text();
      }
      assert.match(note, /\n3\n/);
      await run("apples-2", "counter.add", { key: "apples", delta: 3 });
      const denied = await postJson(`${server.url}/execute`, { action: "echo", payload: {}, nonce: "no-approval" });
      assert.equal(denied.status, 403);
      ids.denied = denied.body.execution_id;
      await run("echo-2", "echo", { m: 2 });
    } finally {
      await server.shutdown();
    }

    try {
      const clean = await runCli(["audit", "--db", `sqlite:///${ledger}`]);
      assert.equal(clean.code, 0, clean.stdout + clean.stderr);
      assert.equal(JSON.parse(clean.stdout).leaves, 6);

      const copyOf = (name: string) => {
        const copy = join(dir.path, `${name}.db`);
        copyFileSync(ledger, copy);
        copyFileSync(`${ledger}.receipt-key.pem`, `${copy}.receipt-key.pem`);
        return copy;
      };
      const db = new Database(ledger, { readonly: true });
      const sizes = db
        .prepare<[], { tree_size: number }>("SELECT tree_size FROM checkpoints ORDER BY tree_size DESC LIMIT 2")
        .all();
      db.close();
      assert.equal(sizes[0]?.tree_size, 6);
      const secondNewest = sizes[1]?.tree_size as number;
      assert.ok(secondNewest >= 3 && secondNewest < 6);
      const columns =
        "tenant_id, action, payload_digest, approval_digest, logical_time_ms, status, reason, result_json, " +
        "result_digest, receipt, receipt_digest, receipt_signature";
      const tamperings: Array<{ name: string; sql: string; table: string; id?: string | undefined; problem: RegExp }> =
        [
          {
            name: "delete every checkpoint",
            sql: "DELETE FROM checkpoints",
            table: "checkpoints",
            problem: /no checkpoint is stored/,
          },
          {
            name: "delete the newest checkpoint",
            sql: "DELETE FROM checkpoints WHERE tree_size = (SELECT max(tree_size) FROM checkpoints)",
            table: "checkpoints",
            // The timer may have signed more checkpoints than the one of 3 leaves: the newest left names its size.
            problem: new RegExp(`no checkpoint covers the whole log: the newest covers ${secondNewest} of 6 leaves`),
          },
          {
            name: "edit the log's recorded size",
            sql: "UPDATE log_state SET size = size - 1",
            table: "log_state",
            problem: /the log's recorded size is 5 but it holds 6 leaves/,
          },
          {
            name: "edit a counter",
            sql: "UPDATE counters SET value = value + 1 WHERE key = 'apples'",
            table: "counters",
            id: "acme/apples",
            problem: /differs/,
          },
          {
            name: "set a counter to an earlier total",
            sql: "UPDATE counters SET value = 2 WHERE key = 'apples'",
            table: "counters",
            id: "acme/apples",
            problem: /differs/,
          },
          {
            name: "add a counter no execution made",
            sql: "INSERT INTO counters (tenant_id, key, value) VALUES ('acme', 'ghost', 5)",
            table: "counters",
            id: "acme/ghost",
            problem: /no executed counter.add/,
          },
          {
            name: "delete a counter",
            sql: "DELETE FROM counters WHERE key = 'pears'",
            table: "counters",
            id: "acme/pears",
            problem: /missing/,
          },
          {
            name: "clear an approval id",
            sql: `UPDATE executions SET approval_id = NULL WHERE execution_id = '${ids["echo-2"]}'`,
            table: "executions",
            id: ids["echo-2"],
            problem: /approval id/,
          },
          {
            name: "an executed row no leaf names",
            sql: `INSERT INTO executions (execution_id, nonce, approval_id, ${columns})
                SELECT 'ghost-execution', 'ghost-nonce', 'ghost-approval', ${columns}
                FROM executions WHERE execution_id = '${ids["echo-1"]}'`,
            table: "executions",
            id: "ghost-execution",
            problem: /no log leaf/,
          },
          {
            name: "a denial no leaf names",
            sql: `INSERT INTO denials SELECT 'ghost-denial', tenant_id, 'ghost-nonce', action, payload_digest,
                approval_digest, reason, logical_time_ms, receipt, receipt_digest, receipt_signature
                FROM denials WHERE attempt_id = '${ids.denied}'`,
            table: "denials",
            id: "ghost-denial",
            problem: /no log leaf/,
          },
          {
            name: "edit an execution's tenant",
            sql: `UPDATE executions SET tenant_id = 'other' WHERE execution_id = '${ids["echo-1"]}'`,
            table: "executions",
            id: ids["echo-1"],
            problem: /tenant/,
          },
          {
            name: "edit a denial's tenant",
            sql: `UPDATE denials SET tenant_id = 'other' WHERE attempt_id = '${ids.denied}'`,
            table: "denials",
            id: ids.denied,
            problem: /tenant/,
          },
        ];
      // The CLI's verdict (exit 1) once; every rule then through the same audit, in this process.
      const auditInProcess = async (path: string) => {
        const store = SqliteLedgerStore.openReadOnly(path);
        try {
          return JSON.parse(JSON.stringify(await auditLedger(store, receiptPublicKey(undefined, path).key)));
        } finally {
          await store.close();
        }
      };
      for (const [i, tampering] of tamperings.entries()) {
        const copy = copyOf(tampering.name.replaceAll(" ", "-").replaceAll("'", ""));
        tamper(copy, tampering.sql);
        let report: AnyJson;
        if (i === 0) {
          const result = await runCli(["audit", "--db", `sqlite:///${copy}`]);
          assert.equal(result.code, 1, `${tampering.name}: ${result.stdout}${result.stderr}`);
          report = JSON.parse(result.stdout);
        } else {
          report = await auditInProcess(copy);
        }
        assert.equal(report.ok, false, tampering.name);
        assert.equal(report.first_divergence.table, tampering.table, tampering.name);
        assert.equal(report.first_divergence.id, tampering.id, tampering.name);
        assert.match(report.first_divergence.problem, tampering.problem, tampering.name);
      }
    } finally {
      dir.cleanup();
    }
  });
});

describe("stored columns of the wrong type (the ledger edited outside OpenExec)", () => {
  it("audit names the row and column (exit 1); the server refuses to serve the row 503 store_unavailable, never 500", async () => {
    const dir = scratchDir();
    const ledger = join(dir.path, "ledger.db");
    const ids: Record<string, { id: string; receipt: string }> = {};
    const server = await startTestServer({ OPENEXEC_ALLOWED_ACTIONS: "echo" }, { dbPath: ledger });
    try {
      for (const name of ["one", "two"]) {
        const answer = await postJson(`${server.url}/execute`, { action: "echo", payload: { name }, nonce: name });
        assert.equal(answer.status, 200);
        ids[name] = { id: answer.body.id, receipt: answer.body.receipt };
      }
      const denied = await postJson(`${server.url}/execute`, {
        action: "add",
        payload: { a: 1, b: 2 },
        nonce: "denied",
      });
      assert.equal(denied.status, 403);
      ids.denied = { id: denied.body.execution_id, receipt: denied.body.receipt };
    } finally {
      await server.shutdown();
    }
    const one = ids.one as { id: string; receipt: string };
    const two = ids.two as { id: string; receipt: string };
    const copyOf = (name: string) => {
      const copy = join(dir.path, `${name}.db`);
      copyFileSync(ledger, copy);
      copyFileSync(`${ledger}.receipt-key.pem`, `${copy}.receipt-key.pem`);
      return copy;
    };
    try {
      const signatureAsText = copyOf("signature-as-text");
      tamper(signatureAsText, `UPDATE executions SET receipt_signature = 'a' WHERE execution_id = '${one.id}'`);
      const audited = await runCli(["audit", "--db", `sqlite:///${signatureAsText}`]);
      assert.equal(audited.code, 1, audited.stdout + audited.stderr);
      assert.deepEqual(JSON.parse(audited.stdout).first_divergence, {
        table: "executions",
        id: one.id,
        column: "receipt_signature",
        problem: "column receipt_signature holds string, not bytes",
      });

      // Other columns, other tables: each a divergence naming its row and column.
      const tamperings = [
        { sql: `UPDATE executions SET logical_time_ms = 'x' WHERE execution_id = '${two.id}'`, table: "executions" },
        { sql: `UPDATE executions SET result_digest = 7 WHERE execution_id = '${two.id}'`, table: "executions" },
        { sql: `UPDATE denials SET receipt_digest = 'x' WHERE attempt_id = '${ids.denied?.id}'`, table: "denials" },
        {
          sql: "UPDATE checkpoints SET root_hash = replace(hex(zeroblob(16)), '0', 'x') WHERE tree_size = (SELECT max(tree_size) FROM checkpoints)",
          table: "checkpoints",
        },
        {
          sql: "UPDATE log_leaves SET leaf_hash = replace(hex(zeroblob(16)), '0', 'x') WHERE leaf_index = 2",
          table: "log_leaves",
        },
      ];
      for (const [i, tampering] of tamperings.entries()) {
        const copy = copyOf(`column-${i}`);
        tamper(copy, tampering.sql);
        const store = SqliteLedgerStore.openReadOnly(copy);
        try {
          const report = await auditLedger(store, receiptPublicKey(undefined, copy).key);
          assert.equal(report.ok, false, tampering.sql);
          assert.equal(report.first_divergence?.table, tampering.table, tampering.sql);
          assert.match(report.first_divergence?.problem ?? "", /^column \w+ holds \w+, not /, tampering.sql);
        } finally {
          await store.close();
        }
      }

      // The server (writer thread on and off) serves every other row; the edited one is refused, not a 500.
      for (const thread of ["on", "off"]) {
        const served = await spawnServer({
          OPENEXEC_DB_URL: `sqlite:///${signatureAsText}`,
          OPENEXEC_LEDGER_THREAD: thread,
        });
        try {
          const verify = await postJson(`${served.url}/receipts/verify`, {
            exec_id: one.id,
            receipt: one.receipt,
            result: { echo: { name: "one" } },
          });
          assert.equal(verify.status, 503, JSON.stringify(verify.body));
          assert.equal(verify.body.reason, "store_unavailable");
          const bundle = await getJson(`${served.url}/receipts/bundle?exec_id=${one.id}`);
          assert.equal(bundle.status, 503, JSON.stringify(bundle.body));
          assert.equal(bundle.body.reason, "store_unavailable");
          const replay = await postJson(`${served.url}/execute`, {
            action: "echo",
            payload: { name: "one" },
            nonce: "one",
          });
          assert.equal(replay.status, 503);
          assert.equal(replay.body.reason, "store_unavailable");
          // Other rows are served as ever.
          const other = await postJson(`${served.url}/receipts/verify`, {
            exec_id: two.id,
            receipt: two.receipt,
            result: { echo: { name: "two" } },
          });
          assert.deepEqual([other.status, other.body.valid], [200, true]);
          assert.equal((await getJson(`${served.url}/receipts/bundle?exec_id=${two.id}`)).status, 200);
          assert.equal((await getJson(`${served.url}/ready`)).status, 200);
        } finally {
          served.child.kill("SIGTERM");
          assert.equal(await served.exited, 0);
        }
      }
    } finally {
      dir.cleanup();
    }
  });
});

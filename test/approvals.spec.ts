import assert from "node:assert/strict";
import { createHash, generateKeyPairSync, sign as nodeSign } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { verifyAsync } from "@noble/ed25519";
import { ApprovalSchema } from "../gen/openexec/v1/approval_pb.js";
import { SignedEnvelopeSchema } from "../gen/openexec/v1/envelope_pb.js";
import { Authorization, ReceiptSchema } from "../gen/openexec/v1/receipt_pb.js";
import { approvalPayloadType } from "../src/approval/approval-artifact.js";
import { verifyEd25519 } from "../src/approval/verify-approval.js";
import { type ApprovalRequest, signApproval } from "../src/client/sign-approval.js";
import { loadServerConfig } from "../src/config/server-config.js";
import { canonicalJsonDigest } from "../src/json/canonical-digest.js";
import { preAuthEncoding } from "../src/signing/dsse.js";
import { parsePublicKeyPem, privateKeySeedFromPem } from "../src/signing/ed25519-keys.js";
import { type AnyJson, postJson } from "./support/clients.js";
import { runCli, startTestServer, type TestServer } from "./support/test-server.js";

function keyPair() {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const publicPem = publicKey.export({ format: "pem", type: "spki" }).toString();
  const privatePem = privateKey.export({ format: "pem", type: "pkcs8" }).toString();
  return { publicPem, privatePem, seed: privateKeySeedFromPem(privatePem), keyId: parsePublicKeyPem(publicPem).keyId };
}

const L = (1n << 252n) + 27742317777372353535851937790883648493n;

describe("clawshield mode", () => {
  const governance = keyPair();
  const rotated = keyPair();
  const stranger = keyPair();
  let server: TestServer;

  before(async () => {
    server = await startTestServer({
      OPENEXEC_MODE: "clawshield",
      CLAWSHIELD_TENANT_ID: "acme",
      CLAWSHIELD_PUBLIC_KEY: governance.publicPem,
      OPENEXEC_APPROVAL_KEYS: JSON.stringify({ "rotated-2026": rotated.publicPem }),
      OPENEXEC_EXECUTOR_ID: "executor-1",
      OPENEXEC_ALLOWED_ACTIONS: "echo,add,counter.add",
    });
  });
  after(() => server.close());

  let counter = 0;
  const approve = (overrides: Partial<ApprovalRequest> = {}) =>
    signApproval({
      privateKey: governance.seed,
      keyId: governance.keyId,
      tenantId: "acme",
      action: "echo",
      payload: { msg: "hello" },
      nonce: `n-${++counter}`,
      lifetimeSeconds: 300,
      ...overrides,
    });
  const execute = (body: Record<string, unknown>) => postJson(`${server.url}/execute`, body);
  const send = async (request: Partial<ApprovalRequest> & { nonce: string }, body: Record<string, unknown> = {}) => {
    const { artifactBase64 } = await approve(request);
    return execute({
      action: request.action ?? "echo",
      payload: request.payload ?? { msg: "hello" },
      nonce: request.nonce,
      approval_artifact: artifactBase64,
      ...body,
    });
  };

  /** A denial: 403, the reason, and a receipt for the attempt that the ledger holds. */
  async function assertDenied(answer: { status: number; body: AnyJson }, reason: string): Promise<void> {
    assert.equal(answer.status, 403, JSON.stringify(answer.body));
    assert.equal(answer.body.code, "permission_denied");
    assert.equal(answer.body.reason, reason);
    assert.match(answer.body.execution_id, /^[0-9a-f-]{36}$/);
    assert.match(answer.body.receipt, /^[0-9a-f]{64}$/);
    // The signed receipt travels with the denial, and its bytes hash to the digest.
    assert.equal(answer.body.signed_receipt.signatures.length, 1);
    assert.equal(
      createHash("sha256").update(Buffer.from(answer.body.signed_receipt.payload, "base64")).digest("hex"),
      answer.body.receipt,
    );
    // The server holds its ledger file exclusively: read it through the server's own store.
    const recorded = await server.store.findById(answer.body.execution_id);
    assert.ok(recorded !== undefined && recorded.status === "denied");
    assert.equal(recorded.reason, reason);
    assert.equal(recorded.receipt.digest.toString("hex"), answer.body.receipt);
  }

  it("a valid approval executes once; its replay returns the stored answer", async () => {
    const { artifactBase64 } = await approve({ nonce: "valid-1" });
    const body = { action: "echo", payload: { msg: "hello" }, nonce: "valid-1", approval_artifact: artifactBase64 };
    const first = await execute(body);
    assert.equal(first.status, 200);
    assert.equal(first.body.approved, true);
    assert.equal(first.body.authorization, "signed_approval");
    assert.equal(
      fromBinary(ReceiptSchema, Buffer.from(first.body.signed_receipt.payload, "base64")).authorization,
      Authorization.SIGNED_APPROVAL,
    );
    assert.equal(first.body.replayed, false);
    const again = await execute(body);
    assert.equal(again.status, 200);
    assert.equal(again.body.replayed, true);
    assert.equal(again.body.id, first.body.id);
  });

  it("a key from the rotation ring verifies too", async () => {
    const answer = await send({ nonce: "rotated-1", privateKey: rotated.seed, keyId: "rotated-2026" });
    assert.equal(answer.status, 200);
  });

  it("missing artifact: approval_missing", async () => {
    await assertDenied(await execute({ action: "echo", payload: {}, nonce: "m-1" }), "approval_missing");
  });

  it("malformed artifact: approval_malformed (not base64, not an envelope, wrong payload type, extra fields)", async () => {
    await assertDenied(
      await execute({ action: "echo", payload: {}, nonce: "mf-1", approval_artifact: "%%%" }),
      "approval_malformed",
    );
    await assertDenied(
      await execute({ action: "echo", payload: {}, nonce: "mf-2", approval_artifact: "aGVsbG8=" }),
      "approval_malformed",
    );
    await assertDenied(
      await execute({ action: "echo", payload: {}, nonce: "mf-3", approval_artifact: { signature: "x" } }),
      "approval_malformed",
    );
    const { artifact } = await approve({ nonce: "mf-4" });
    const envelope = fromBinary(SignedEnvelopeSchema, artifact);
    envelope.payloadType = "application/vnd.openexec.receipt.v1+proto";
    await assertDenied(
      await execute({
        action: "echo",
        payload: { msg: "hello" },
        nonce: "mf-4",
        approval_artifact: Buffer.from(toBinary(SignedEnvelopeSchema, envelope)).toString("base64"),
      }),
      "approval_malformed",
    );
    // Unknown fields inside the signature entry, and an approval encoded non-canonically
    // (its action field written twice: decoders keep the last one).
    const nested = fromBinary(SignedEnvelopeSchema, artifact);
    const entry = nested.signatures[0];
    assert.ok(entry !== undefined);
    entry.$unknown = [{ no: 9, wireType: 0, data: Uint8Array.of(1) }];
    await assertDenied(
      await execute({
        action: "echo",
        payload: { msg: "hello" },
        nonce: "mf-4",
        approval_artifact: Buffer.from(toBinary(SignedEnvelopeSchema, nested)).toString("base64"),
      }),
      "approval_malformed",
    );
    const doubled = fromBinary(SignedEnvelopeSchema, artifact);
    doubled.payload = new Uint8Array([...doubled.payload, 0x1a, 0x04, ...Buffer.from("echo")]);
    await assertDenied(
      await execute({
        action: "echo",
        payload: { msg: "hello" },
        nonce: "mf-4",
        approval_artifact: Buffer.from(toBinary(SignedEnvelopeSchema, doubled)).toString("base64"),
      }),
      "approval_malformed",
    );
    const withUnknownField = new Uint8Array([...artifact, 0xf8, 0x01, 0x01]); // field 31, varint 1
    await assertDenied(
      await execute({
        action: "echo",
        payload: { msg: "hello" },
        nonce: "mf-4",
        approval_artifact: Buffer.from(withUnknownField).toString("base64"),
      }),
      "approval_malformed",
    );
  });

  it("unknown key id: approval_key_unknown", async () => {
    await assertDenied(
      await send({ nonce: "k-1", privateKey: stranger.seed, keyId: stranger.keyId }),
      "approval_key_unknown",
    );
  });

  it("wrong key (a stranger signing under a trusted key id): approval_signature_invalid", async () => {
    await assertDenied(await send({ nonce: "wk-1", privateKey: stranger.seed }), "approval_signature_invalid");
  });

  const resign = async (nonce: string, mutate: (sig: Uint8Array) => Uint8Array) => {
    const { artifact } = await approve({ nonce });
    const envelope = fromBinary(SignedEnvelopeSchema, artifact);
    const signature = envelope.signatures[0];
    assert.ok(signature !== undefined);
    signature.sig = mutate(signature.sig);
    return execute({
      action: "echo",
      payload: { msg: "hello" },
      nonce,
      approval_artifact: Buffer.from(toBinary(SignedEnvelopeSchema, envelope)).toString("base64"),
    });
  };

  it("tampered signature: approval_signature_invalid", async () => {
    await assertDenied(
      await resign("ts-1", (sig) => {
        const copy = new Uint8Array(sig);
        copy[10] = (copy[10] ?? 0) ^ 0x01;
        return copy;
      }),
      "approval_signature_invalid",
    );
  });

  it("non-canonical signature (S + L, which lax verifiers accept): approval_signature_invalid", async () => {
    await assertDenied(
      await resign("nc-1", (sig) => {
        let s = 0n;
        for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(sig[i] ?? 0);
        let t = s + L;
        const copy = new Uint8Array(sig);
        for (let i = 32; i < 64; i++) {
          copy[i] = Number(t & 0xffn);
          t >>= 8n;
        }
        return copy;
      }),
      "approval_signature_invalid",
    );
  });

  it("payload changed: approval_payload_mismatch", async () => {
    await assertDenied(await send({ nonce: "pc-1" }, { payload: { msg: "rm -rf /" } }), "approval_payload_mismatch");
  });

  it("action changed: approval_action_mismatch", async () => {
    await assertDenied(
      await send({ nonce: "ac-1", action: "add", payload: { a: 1, b: 2 } }, { action: "echo" }),
      "approval_action_mismatch",
    );
  });

  it("other tenant: approval_tenant_mismatch", async () => {
    await assertDenied(await send({ nonce: "t-1", tenantId: "globex" }), "approval_tenant_mismatch");
  });

  it("other audience: approval_audience_mismatch; this executor's audience runs", async () => {
    await assertDenied(await send({ nonce: "au-1", audience: "executor-2" }), "approval_audience_mismatch");
    assert.equal((await send({ nonce: "au-2", audience: "executor-1" })).status, 200);
  });

  it("an executor without OPENEXEC_EXECUTOR_ID refuses every approval with an audience (approval_audience_mismatch)", async () => {
    const anonymous = await startTestServer({
      OPENEXEC_MODE: "clawshield",
      CLAWSHIELD_TENANT_ID: "acme",
      CLAWSHIELD_PUBLIC_KEY: governance.publicPem,
    });
    try {
      const sendTo = async (request: Partial<ApprovalRequest> & { nonce: string }) => {
        const { artifactBase64 } = await approve(request);
        return postJson(`${anonymous.url}/execute`, {
          action: "echo",
          payload: { msg: "hello" },
          nonce: request.nonce,
          approval_artifact: artifactBase64,
        });
      };
      // Whatever executor the approval names, this one has no id to match it: an audience is never "any".
      for (const audience of ["executor-1", "undefined"]) {
        const denied = await sendTo({ nonce: "anon-1", audience });
        assert.equal(denied.status, 403, JSON.stringify(denied.body));
        assert.equal(denied.body.reason, "approval_audience_mismatch");
        const recorded = await anonymous.store.findById(denied.body.execution_id);
        assert.ok(recorded !== undefined && recorded.status === "denied");
        assert.equal(recorded.reason, "approval_audience_mismatch");
      }
      // Without an audience the approval is for any executor of the tenant, and the nonce is still unspent.
      const ran = await sendTo({ nonce: "anon-1" });
      assert.equal(ran.status, 200, JSON.stringify(ran.body));
      assert.equal(ran.body.replayed, false);
    } finally {
      await anonymous.close();
    }
  });

  it("an approval reused with a fresh nonce: approval_nonce_mismatch", async () => {
    const { artifactBase64 } = await approve({ nonce: "fresh-1" });
    const first = await execute({
      action: "echo",
      payload: { msg: "hello" },
      nonce: "fresh-1",
      approval_artifact: artifactBase64,
    });
    assert.equal(first.status, 200);
    await assertDenied(
      await execute({ action: "echo", payload: { msg: "hello" }, nonce: "fresh-2", approval_artifact: artifactBase64 }),
      "approval_nonce_mismatch",
    );
  });

  it("expired: approval_expired (past not_after plus the 30 s skew)", async () => {
    const issuedAt = new Date(Date.now() - 3_600_000);
    await assertDenied(await send({ nonce: "ex-1", issuedAt, lifetimeSeconds: 60 }), "approval_expired");
    // Within the skew is still accepted.
    const recent = new Date(Date.now() - 70_000);
    assert.equal((await send({ nonce: "ex-2", issuedAt: recent, lifetimeSeconds: 60 })).status, 200);
  });

  it("not yet valid: approval_not_yet_valid", async () => {
    await assertDenied(
      await send({ nonce: "nyv-1", issuedAt: new Date(Date.now() + 600_000) }),
      "approval_not_yet_valid",
    );
  });

  it("not yet valid within the 30 s clock skew is accepted", async () => {
    assert.equal((await send({ nonce: "nyv-skew", issuedAt: new Date(Date.now() + 10_000) })).status, 200);
    await assertDenied(
      await send({ nonce: "nyv-2", issuedAt: new Date(Date.now() + 90_000) }),
      "approval_not_yet_valid",
    );
  });

  it("a negative lifetime (not_after before issued_at): approval_lifetime_too_long", async () => {
    // Issued 20 s ahead (inside the skew), ending 10 s before that: neither
    // expired nor not yet valid, only impossible.
    await assertDenied(
      await send({ nonce: "neg-1", issuedAt: new Date(Date.now() + 20_000), lifetimeSeconds: -10 }),
      "approval_lifetime_too_long",
    );
  });

  it("an unused approval for nonce A sent with nonce B: approval_nonce_mismatch, and A still runs", async () => {
    const { artifactBase64 } = await approve({ nonce: "ab-A" });
    const body = { action: "echo", payload: { msg: "hello" }, approval_artifact: artifactBase64 };
    await assertDenied(await execute({ ...body, nonce: "ab-B" }), "approval_nonce_mismatch");
    const first = await execute({ ...body, nonce: "ab-A" });
    assert.equal(first.status, 200);
    assert.equal(first.body.replayed, false);
  });

  it("lifetime too long: approval_lifetime_too_long", async () => {
    await assertDenied(await send({ nonce: "lt-1", lifetimeSeconds: 2 * 86_400 }), "approval_lifetime_too_long");
  });

  it("approval id reused for another execution: approval_reused", async () => {
    assert.equal((await send({ nonce: "id-1", approvalId: "approval-42" })).status, 200);
    await assertDenied(await send({ nonce: "id-2", approvalId: "approval-42" }), "approval_reused");
    // The refused attempt did not take the nonce: a proper approval still runs it.
    assert.equal((await send({ nonce: "id-2", approvalId: "approval-43" })).status, 200);
  });

  it("action outside the allow-list: action_not_allowed, recorded", async () => {
    const restricted = await startTestServer({
      OPENEXEC_MODE: "clawshield",
      CLAWSHIELD_TENANT_ID: "acme",
      CLAWSHIELD_PUBLIC_KEY: governance.publicPem,
      OPENEXEC_ALLOWED_ACTIONS: "echo",
    });
    try {
      const { artifactBase64 } = await approve({ nonce: "al-1", action: "add", payload: { a: 1, b: 2 } });
      const answer = await postJson(`${restricted.url}/execute`, {
        action: "add",
        payload: { a: 1, b: 2 },
        nonce: "al-1",
        approval_artifact: artifactBase64,
      });
      assert.equal(answer.status, 403);
      assert.equal(answer.body.reason, "action_not_allowed");
      assert.match(answer.body.receipt, /^[0-9a-f]{64}$/);
    } finally {
      await restricted.close();
    }
  });

  it("a denial never consumes the nonce: a forged request cannot block the real one", async () => {
    await assertDenied(await send({ nonce: "burn-1", privateKey: stranger.seed }), "approval_signature_invalid");
    assert.equal((await send({ nonce: "burn-1" })).status, 200);
  });

  it("health lists key ids and fingerprints, never key material", async () => {
    const health = (await (await fetch(`${server.url}/health`)).json()) as AnyJson;
    assert.equal(health.exec_mode, "clawshield");
    assert.equal(health.signature_verification, "enabled");
    const ids = health.approval_keys.map((k: { key_id: string }) => k.key_id).sort();
    assert.deepEqual(ids, [governance.keyId, "rotated-2026"].sort());
    const text = JSON.stringify(health);
    assert.ok(!text.includes("BEGIN") && !text.includes(governance.publicPem.split("\n")[1] ?? "x"));
  });
});

describe("signatures across libraries", () => {
  const key = keyPair();
  const verificationKey = parsePublicKeyPem(key.publicPem);

  it("an artifact signed with @noble/ed25519 verifies with node:crypto, and strict noble agrees", async () => {
    const { artifact } = await signApproval({
      privateKey: key.seed,
      keyId: key.keyId,
      tenantId: "t",
      action: "echo",
      payload: { x: 1 },
      nonce: "x",
      lifetimeSeconds: 60,
    });
    const envelope = fromBinary(SignedEnvelopeSchema, artifact);
    const sig = envelope.signatures[0]?.sig ?? new Uint8Array();
    const message = preAuthEncoding(envelope.payloadType, envelope.payload);
    assert.equal(await verifyEd25519(verificationKey, message, sig), true);
    assert.equal(await verifyAsync(sig, message, verificationKey.raw, { zip215: false }), true);
  });

  it("an artifact signed with node:crypto verifies with @noble/ed25519 (strict RFC 8032)", async () => {
    const approval = toBinary(
      ApprovalSchema,
      create(ApprovalSchema, {
        approvalId: "a",
        tenantId: "t",
        action: "echo",
        payloadDigest: canonicalJsonDigest({ x: 1 }),
        nonce: "x",
        issuedAt: timestampFromMs(Date.now()),
        notAfter: timestampFromMs(Date.now() + 60_000),
        keyId: key.keyId,
      }),
    );
    const message = preAuthEncoding(approvalPayloadType, approval);
    const sig = nodeSign(null, message, key.privatePem);
    assert.equal(await verifyAsync(sig, message, verificationKey.raw, { zip215: false }), true);
    assert.equal(await verifyEd25519(verificationKey, message, sig), true);
  });
});

describe("clawshield configuration", () => {
  it("refuses to start without a key, without a tenant, or with an unreadable or small-order key", () => {
    const problems = (env: Record<string, string>) => {
      try {
        loadServerConfig({ OPENEXEC_MODE: "clawshield", ...env }, {}, ["echo"]);
        return [];
      } catch (error) {
        return (error as { problems: string[] }).problems;
      }
    };
    const key = keyPair();
    assert.match(problems({ CLAWSHIELD_TENANT_ID: "acme" }).join(), /needs a governance public key/);
    assert.match(problems({ CLAWSHIELD_PUBLIC_KEY: key.publicPem }).join(), /needs CLAWSHIELD_TENANT_ID/);
    assert.match(
      problems({
        CLAWSHIELD_TENANT_ID: "acme",
        CLAWSHIELD_PUBLIC_KEY: "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----",
      }).join(),
      /not a readable PEM public key/,
    );
    // The identity point (y = 1), a small-order key that "verifies" forged signatures under lax checks.
    const smallOrder = Buffer.concat([
      Buffer.from("302a300506032b6570032100", "hex"),
      Buffer.from(`01${"00".repeat(31)}`, "hex"),
    ]);
    const smallOrderPem = `-----BEGIN PUBLIC KEY-----\n${smallOrder.toString("base64")}\n-----END PUBLIC KEY-----\n`;
    assert.match(
      problems({ CLAWSHIELD_TENANT_ID: "acme", CLAWSHIELD_PUBLIC_KEY: smallOrderPem }).join(),
      /small-order/,
    );
    // PEM with literal \n, as environment files often carry it.
    assert.deepEqual(
      problems({ CLAWSHIELD_TENANT_ID: "acme", CLAWSHIELD_PUBLIC_KEY: key.publicPem.replaceAll("\n", "\\n") }),
      [],
    );
  });

  it("openexec serve in clawshield mode without a key exits 2 with a clear message", async () => {
    const { code, stderr } = await runCli(["serve", "--port", "0"], {
      OPENEXEC_MODE: "clawshield",
      CLAWSHIELD_TENANT_ID: "acme",
    });
    assert.equal(code, 2);
    assert.match(stderr, /CLAWSHIELD_PUBLIC_KEY/);
  });
});

import assert from "node:assert/strict";
import { generateKeyPairSync, sign as nodeSign } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ApprovalSchema } from "../gen/openexec/v1/approval_pb.js";
import { EnvelopeSignatureSchema, SignedEnvelopeSchema } from "../gen/openexec/v1/envelope_pb.js";
import { ErrorDetailSchema } from "../gen/openexec/v1/error_pb.js";
import { approvalPayloadType } from "../src/approval/approval-artifact.js";
import { signApproval } from "../src/client/sign-approval.js";
import { canonicalJsonDigest } from "../src/json/canonical-digest.js";
import { preAuthEncoding } from "../src/signing/dsse.js";
import { parsePublicKeyPem, privateKeySeedFromPem } from "../src/signing/ed25519-keys.js";
import { type AnyJson, postJson } from "./support/clients.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

/** Every byte of an approval artifact matters: its envelope, its base64 and its timestamps are read one way only. */
describe("approval artifact encoding", () => {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const publicPem = publicKey.export({ format: "pem", type: "spki" }).toString();
  const privatePem = privateKey.export({ format: "pem", type: "pkcs8" }).toString();
  const keyId = parsePublicKeyPem(publicPem).keyId;
  const payload = { msg: "hello" };
  let server: TestServer;

  before(async () => {
    server = await startTestServer({
      OPENEXEC_MODE: "clawshield",
      CLAWSHIELD_TENANT_ID: "acme",
      CLAWSHIELD_PUBLIC_KEY: publicPem,
    });
  });
  after(() => server.close());

  const approve = (nonce: string, approvalId?: string) =>
    signApproval({
      privateKey: privateKeySeedFromPem(privatePem),
      keyId,
      tenantId: "acme",
      action: "echo",
      payload,
      nonce,
      lifetimeSeconds: 300,
      ...(approvalId === undefined ? {} : { approvalId }),
    });
  const restExecute = (nonce: string, artifact: string) =>
    postJson(`${server.url}/execute`, { action: "echo", payload, nonce, approval_artifact: artifact });
  const connectExecute = (nonce: string, artifact: string) =>
    postJson(`${server.url}/openexec.v1.ExecutionService/Execute`, {
      action: "echo",
      payload,
      nonce,
      approvalArtifact: artifact,
    });

  /** The attempt was denied and recorded with this reason. */
  async function assertRecordedDenial(executionId: string, reason: string): Promise<void> {
    // The server holds its ledger exclusively: read it through the server's own store.
    const recorded = await server.store.findById(executionId);
    assert.ok(recorded !== undefined && recorded.status === "denied", `no denial recorded for ${executionId}`);
    assert.equal(recorded.reason, reason);
  }

  async function assertRestMalformed(answer: { status: number; body: AnyJson }): Promise<void> {
    assert.equal(answer.status, 403, JSON.stringify(answer.body));
    assert.equal(answer.body.reason, "approval_malformed");
    await assertRecordedDenial(answer.body.execution_id, "approval_malformed");
  }

  async function assertConnectMalformed(answer: { status: number; headers: Headers; body: AnyJson }): Promise<void> {
    assert.equal(answer.status, 403, JSON.stringify(answer.body));
    assert.equal(answer.body.code, "permission_denied");
    assert.equal(answer.headers.get("openexec-reason"), "approval_malformed");
    const detail = fromBinary(ErrorDetailSchema, Buffer.from(answer.body.details[0].value, "base64"));
    assert.equal(detail.reason, "approval_malformed");
    await assertRecordedDenial(detail.executionId, "approval_malformed");
  }

  /** tag, varint length, bytes: one length-delimited field with a tag byte of our choosing. */
  const field = (tag: number, bytes: Uint8Array) => {
    assert.ok(bytes.length < 128);
    return Buffer.concat([Buffer.of(tag, bytes.length), bytes]);
  };
  const utf8 = (text: string) => Buffer.from(text, "utf8");

  it("the envelope as built by hand is byte for byte the signed artifact, and it executes", async () => {
    const { artifact, artifactBase64 } = await approve("hand-1");
    const envelope = fromBinary(SignedEnvelopeSchema, artifact);
    const signature = toBinary(EnvelopeSignatureSchema, envelope.signatures[0] ?? create(EnvelopeSignatureSchema));
    const byHand = Buffer.concat([
      Buffer.of(0x0a, ...varint(envelope.payload.length)),
      envelope.payload,
      field(0x12, utf8(envelope.payloadType)),
      field(0x1a, signature),
    ]);
    assert.deepEqual(new Uint8Array(byHand), artifact);
    const answer = await restExecute("hand-1", artifactBase64);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.body.approved, true);
  });

  for (const [name, from, to] of [
    ["payload_type as a varint field", 0x12, 0x10],
    ["payload_type as a fixed32 field", 0x12, 0x15],
    ["payload_type as a group start", 0x12, 0x13],
    ["the signature entry as a fixed64 field", 0x1a, 0x19],
  ] as const) {
    it(`a changed wire type in the unsigned envelope (${name}) is approval_malformed, recorded`, async () => {
      const nonce = `wire-${from}-${to}`;
      const { artifact } = await approve(nonce);
      const envelope = fromBinary(SignedEnvelopeSchema, artifact);
      const signature = toBinary(EnvelopeSignatureSchema, envelope.signatures[0] ?? create(EnvelopeSignatureSchema));
      const changed = Buffer.concat([
        Buffer.of(0x0a, ...varint(envelope.payload.length)),
        envelope.payload,
        field(from === 0x12 ? to : 0x12, utf8(envelope.payloadType)),
        field(from === 0x1a ? to : 0x1a, signature),
      ]);
      await assertRestMalformed(await restExecute(nonce, changed.toString("base64")));
    });
  }

  it("a changed wire type inside the signature entry (key_id as a varint) is approval_malformed", async () => {
    const { artifact } = await approve("wire-key-id");
    const envelope = fromBinary(SignedEnvelopeSchema, artifact);
    const sig = envelope.signatures[0]?.sig ?? new Uint8Array();
    const entry = Buffer.concat([field(0x08, utf8(keyId)), field(0x12, sig)]);
    const changed = Buffer.concat([
      Buffer.of(0x0a, ...varint(envelope.payload.length)),
      envelope.payload,
      field(0x12, utf8(envelope.payloadType)),
      field(0x1a, entry),
    ]);
    await assertRestMalformed(await restExecute("wire-key-id", changed.toString("base64")));
  });

  it("every single changed byte of the artifact is refused with an approval reason, never executed", async () => {
    const { artifact, artifactBase64 } = await approve("every-byte");
    for (let i = 0; i < artifact.length; i++) {
      const changed = Buffer.from(artifact);
      changed[i] = (changed[i] ?? 0) ^ 0x01;
      const answer = await restExecute("every-byte", changed.toString("base64"));
      assert.equal(answer.status, 403, `byte ${i}: ${JSON.stringify(answer.body)}`);
      assert.match(answer.body.reason, /^approval_/);
    }
    // The untouched artifact still runs: nothing above consumed the nonce or the approval.
    assert.equal((await restExecute("every-byte", artifactBase64)).status, 200);
  });

  /** An artifact whose length is not a multiple of 3, so that its base64 has padding bits. */
  async function paddedArtifact(nonce: string) {
    for (let length = 8; ; length++) {
      const signed = await approve(nonce, `${nonce}-${"a".repeat(length)}`);
      if (signed.artifact.length % 3 !== 0) return signed;
    }
  }

  /** The same base64 with the last character's unused low bits set. */
  function withPaddingBits(base64: string): string {
    const unpadded = base64.replace(/=+$/, "");
    const padding = base64.slice(unpadded.length);
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const last = alphabet.indexOf(unpadded.at(-1) ?? "A");
    const bits = padding.length === 2 ? 0b1111 : 0b11;
    const changed = `${unpadded.slice(0, -1)}${alphabet[last | bits]}${padding}`;
    assert.notEqual(changed, base64);
    // A lenient decoder reads the same bytes: that is the problem.
    assert.deepEqual(Buffer.from(changed, "base64"), Buffer.from(base64, "base64"));
    return changed;
  }

  it("REST: base64 with non-zero padding bits is approval_malformed, recorded; the canonical spelling runs", async () => {
    const { artifactBase64 } = await paddedArtifact("pad-rest");
    await assertRestMalformed(await restExecute("pad-rest", withPaddingBits(artifactBase64)));
    await assertRestMalformed(await restExecute("pad-rest", withPaddingBits(artifactBase64).replace(/=+$/, "")));
    const url = artifactBase64.replaceAll("+", "-").replaceAll("/", "_");
    assert.equal((await restExecute("pad-rest", url.replace(/=+$/, ""))).status, 200);
  });

  it("Connect JSON: a bytes field with non-zero padding bits is approval_malformed, recorded", async () => {
    const { artifactBase64 } = await paddedArtifact("pad-connect");
    await assertConnectMalformed(await connectExecute("pad-connect", withPaddingBits(artifactBase64)));
    await assertConnectMalformed(await connectExecute("pad-connect", "not base64!"));
    const answer = await connectExecute("pad-connect", artifactBase64);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.body.approved, true);
  });

  /** An approval with these timestamps, signed as the governance key would. */
  function artifactWith(nonce: string, issuedAt: Timestamp, notAfter: Timestamp): string {
    const approval = toBinary(
      ApprovalSchema,
      create(ApprovalSchema, {
        approvalId: `ts-${nonce}`,
        tenantId: "acme",
        action: "echo",
        payloadDigest: canonicalJsonDigest(payload),
        nonce,
        issuedAt,
        notAfter,
        keyId,
      }),
    );
    const sig = nodeSign(null, preAuthEncoding(approvalPayloadType, approval), privatePem);
    const envelope = create(SignedEnvelopeSchema, {
      payload: approval,
      payloadType: approvalPayloadType,
      signatures: [{ keyId, sig }],
    });
    return Buffer.from(toBinary(SignedEnvelopeSchema, envelope)).toString("base64");
  }

  it("Timestamps outside google.protobuf.Timestamp's range are approval_malformed, recorded", async () => {
    const now = Date.now();
    const issued = timestampFromMs(now);
    const later = timestampFromMs(now + 60_000);
    const cases: Array<[string, Timestamp, Timestamp]> = [
      ["neg-nanos", { ...issued, nanos: -1 }, later],
      ["neg-nanos-end", issued, { ...later, nanos: -500_000_000 }],
      ["big-nanos", { ...issued, nanos: 1_000_000_000 }, later],
      ["big-nanos-end", issued, { ...later, nanos: 1_999_999_999 }],
      ["seconds-past-9999", issued, { ...later, seconds: 253402300800n }],
      ["seconds-before-0001", { ...issued, seconds: -62135596801n }, later],
    ];
    for (const [nonce, issuedAt, notAfter] of cases) {
      await assertRestMalformed(await restExecute(nonce, artifactWith(nonce, issuedAt, notAfter)));
    }
    // The same construction with valid timestamps runs.
    assert.equal((await restExecute("ts-ok", artifactWith("ts-ok", issued, later))).status, 200);
  });
});

function varint(value: number): number[] {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return out;
}

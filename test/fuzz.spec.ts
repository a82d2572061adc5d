import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { codeFromString, codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import { ServerReflectionRequestSchema } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ExecuteRequestSchema, VerifyReceiptRequestSchema } from "../gen/openexec/v1/execution_pb.js";
import { GetHealthRequestSchema } from "../gen/openexec/v1/info_pb.js";
import { postJson } from "./support/clients.js";
import { connectCall, envelope, grpcCall, grpcWebCall, type RawAnswer } from "./support/raw-rpc.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

/** mulberry32: a small deterministic PRNG, so that every run sends the same cases. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const seed = Number(process.env.OPENEXEC_FUZZ_SEED ?? 0x0e7ec);
const caseCount = Number(process.env.OPENEXEC_FUZZ_CASES ?? 360);

/**
 * Generated bad input over every way in: mutated, truncated and random bodies,
 * wrong content types and broken framing, on REST, Connect (JSON and binary,
 * POST and GET), gRPC and gRPC-web. Whatever is sent, the answer is never a
 * server error (HTTP 5xx, or a gRPC status that maps to one) except the
 * protocol-mandated 501 and 505, and the server is still ready afterwards.
 */
describe("fuzz: no input makes the server fail", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ OPENEXEC_MAX_BODY_BYTES: "8192", OPENEXEC_MAX_JSON_DEPTH: "8" });
  });
  after(() => server.close());

  const random = prng(seed);
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)] as T;
  const utf8 = (text: string) => new TextEncoder().encode(text);

  const jsonSeeds = [
    '{"action":"echo","payload":{"msg":"hi","n":[1,2.5,-0,1e300,true,null,{"k":"\\u00e9"}]},"nonce":"f-1"}',
    '{"action":"add","payload":{"a":1,"b":2},"nonce":"f-2"}',
    '{"action":"counter.add","payload":{"key":"k","delta":1},"nonce":"f-3","approval_artifact":"CgA="}',
    '{"exec_id":"x","result":{"echo":{"msg":"hi"}},"receipt":"00"}',
    '{"execId":"x","result":"{\\"a\\":1}","receipt":"00"}',
    '{"action":"echo","payload":{"constructor":{"prototype":[]}},"nonce":"f-4"}',
  ];
  const binarySeeds = [
    toBinary(
      ExecuteRequestSchema,
      create(ExecuteRequestSchema, {
        action: "echo",
        nonce: "b-1",
        payload: { msg: "hi", list: [1, "two", null, { deep: [true] }] },
        approvalArtifact: Uint8Array.of(1, 2, 3),
      }),
    ),
    toBinary(
      VerifyReceiptRequestSchema,
      create(VerifyReceiptRequestSchema, {
        execId: "x",
        receipt: "00",
        result: { kind: { case: "listValue", value: { values: [{ kind: { case: "numberValue", value: 1 } }] } } },
      }),
    ),
    toBinary(GetHealthRequestSchema, create(GetHealthRequestSchema)),
    toBinary(
      ServerReflectionRequestSchema,
      create(ServerReflectionRequestSchema, { host: "h", messageRequest: { case: "listServices", value: "*" } }),
    ),
  ];

  /** One random change: flip, truncate, insert, delete, duplicate, splice in special bytes, or replace all. */
  function mutate(input: Uint8Array): Uint8Array {
    const bytes = Buffer.from(input);
    const at = int(bytes.length + 1);
    const specials = [
      "\\ud800",
      "1e400",
      "-1e400",
      "NaN",
      '"__proto__"',
      "\xff",
      "{",
      "]",
      '"',
      "\u0000",
      "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80",
    ];
    switch (int(8)) {
      case 0:
        if (bytes.length > 0) {
          const i = int(bytes.length);
          bytes[i] = (bytes[i] ?? 0) ^ (1 << int(8));
        }
        return bytes;
      case 1:
        return bytes.subarray(0, at);
      case 2:
        return Buffer.concat([
          bytes.subarray(0, at),
          Buffer.from(Array.from({ length: 1 + int(8) }, () => int(256))),
          bytes.subarray(at),
        ]);
      case 3:
        return Buffer.concat([bytes.subarray(0, at), bytes.subarray(Math.min(bytes.length, at + 1 + int(16)))]);
      case 4:
        return Buffer.concat([bytes.subarray(0, at), bytes.subarray(int(bytes.length)), bytes.subarray(at)]);
      case 5:
        return Buffer.concat([bytes.subarray(0, at), Buffer.from(pick(specials), "latin1"), bytes.subarray(at)]);
      case 6:
        return Buffer.from(Array.from({ length: int(64) }, () => int(256)));
      default:
        return Buffer.concat([bytes, bytes]);
    }
  }

  /** Framing for gRPC and gRPC-web, sometimes broken on purpose. */
  function frame(message: Uint8Array): { body: Uint8Array; headers: Record<string, string> } {
    switch (int(7)) {
      case 0: {
        const framed = Buffer.from(envelope(message));
        framed.writeUInt32BE(message.length + 1 + int(100), 1);
        return { body: framed, headers: {} };
      }
      case 1:
        return { body: envelope(message, 1), headers: {} };
      case 2:
        return { body: envelope(message, 1), headers: { "grpc-encoding": "gzip" } };
      case 3:
        return { body: envelope(gzipSync(message), 1), headers: { "grpc-encoding": pick(["gzip", "br", "zstd"]) } };
      case 4:
        return { body: envelope(message, pick([0x02, 0x80, 0x7f])), headers: {} };
      case 5:
        return { body: Buffer.concat([envelope(message), envelope(message)]), headers: {} };
      default:
        return { body: envelope(message).subarray(0, int(message.length + 6)), headers: {} };
    }
  }

  const rpcPaths = [
    "/openexec.v1.ExecutionService/Execute",
    "/openexec.v1.ExecutionService/VerifyReceipt",
    "/openexec.v1.InfoService/GetHealth",
    "/openexec.v1.TransparencyLogService/GetReceiptBundle",
  ];
  const streamPaths = [
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
  ];
  const contentTypes = [
    "application/json",
    "application/proto",
    "application/grpc",
    "application/grpc+json",
    "application/grpc-web+proto",
    "application/connect+json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "application/json; charset=latin1",
    "",
  ];

  /** The HTTP status an answer amounts to: its own, or the one its gRPC / Connect code maps to. */
  function effectiveStatus(answer: RawAnswer): number {
    if (answer.status !== 200 || answer.code === "ok" || answer.code === "") return answer.status;
    const code = codeFromString(answer.code);
    return code === undefined ? 500 : codeToHttpStatus(code);
  }

  type Case = { name: string; send: () => Promise<RawAnswer> };
  function generate(index: number): Case {
    const json = () => (random() < 0.85 ? mutate(utf8(pick(jsonSeeds))) : utf8(pick(jsonSeeds)));
    const binary = () => (random() < 0.85 ? mutate(pick(binarySeeds)) : pick(binarySeeds));
    const path = pick(rpcPaths);
    switch (index % 8) {
      case 0:
      case 1: {
        const restPath = pick(["/execute", "/receipts/verify"]);
        const body = json();
        const type = random() < 0.8 ? "application/json" : pick(contentTypes);
        return {
          name: `REST ${restPath} ${type}`,
          send: async () => {
            const response = await fetch(`${server.url}${restPath}`, {
              method: "POST",
              headers: type === "" ? {} : { "content-type": type },
              body,
            });
            const text = await response.text();
            return { status: response.status, code: "", reason: undefined, detailReason: undefined, body: utf8(text) };
          },
        };
      }
      case 2: {
        const useJson = random() < 0.5;
        const body = useJson ? json() : binary();
        const type = random() < 0.8 ? (useJson ? "application/json" : "application/proto") : pick(contentTypes);
        const headers: Record<string, string> =
          random() < 0.15 ? { "content-encoding": pick(["gzip", "br", "x"]) } : {};
        return { name: `Connect POST ${path} ${type}`, send: () => connectCall(server.url, path, type, body, headers) };
      }
      case 3: {
        const getPath = pick([
          "/openexec.v1.InfoService/GetHealth",
          "/openexec.v1.TransparencyLogService/GetCheckpoint",
        ]);
        const useJson = random() < 0.5;
        const raw = useJson ? json() : binary();
        const params = new URLSearchParams({ encoding: pick(["json", "proto", "xml"]) });
        if (random() < 0.5) params.set("base64", "1");
        params.set(
          "message",
          params.get("base64") === "1" ? Buffer.from(raw).toString("base64url") : Buffer.from(raw).toString("latin1"),
        );
        if (random() < 0.2) params.set("compression", pick(["gzip", "br", "nope"]));
        if (random() < 0.2)
          params.set("message", Buffer.from(mutate(utf8(params.get("message") ?? ""))).toString("latin1"));
        return {
          name: `Connect GET ${getPath}`,
          send: () => connectCall(server.url, `${getPath}?${params}`, "", undefined),
        };
      }
      case 4:
      case 5: {
        const useJson = random() < 0.3;
        const streamPath = random() < 0.25 ? pick(streamPaths) : path;
        const { body, headers } = random() < 0.7 ? frame(useJson ? json() : binary()) : { body: binary(), headers: {} };
        const type = random() < 0.85 ? (useJson ? "application/grpc+json" : "application/grpc") : pick(contentTypes);
        return {
          name: `gRPC ${streamPath} ${type}`,
          send: () => grpcCall(server.url, streamPath, type, body, headers),
        };
      }
      default: {
        const useJson = random() < 0.3;
        const { body, headers } = random() < 0.7 ? frame(useJson ? json() : binary()) : { body: binary(), headers: {} };
        const type =
          random() < 0.85 ? (useJson ? "application/grpc-web+json" : "application/grpc-web+proto") : pick(contentTypes);
        return { name: `gRPC-web ${path} ${type}`, send: () => grpcWebCall(server.url, path, type, body, headers) };
      }
    }
  }

  it(`${caseCount} generated cases (seed ${seed}): no 5xx but 501/505, no INTERNAL`, async () => {
    const failures: string[] = [];
    const seen = new Map<string, number>();
    for (let i = 0; i < caseCount; i++) {
      const c = generate(i);
      let answer: RawAnswer;
      try {
        answer = await c.send();
      } catch (error) {
        // A transport-level refusal (the server reset a stream it could not read) is not a server error.
        seen.set("reset", (seen.get("reset") ?? 0) + 1);
        assert.ok(error instanceof Error, String(error));
        continue;
      }
      const status = effectiveStatus(answer);
      seen.set(String(status), (seen.get(String(status)) ?? 0) + 1);
      if ((status >= 500 && status !== 501 && status !== 505) || answer.code === "internal") {
        failures.push(
          `#${i} ${c.name}: ${status} ${answer.code} ${answer.message ?? new TextDecoder().decode(answer.body).slice(0, 200)}`,
        );
      }
      // A refusal of malformed input always names its reason.
      if (answer.code === "invalid_argument") {
        assert.ok(answer.reason !== undefined && answer.reason === answer.detailReason, `#${i} ${c.name}: no reason`);
      }
    }
    assert.deepEqual(failures, []);
    // The cases did reach every kind of answer, not just one.
    assert.ok((seen.get("400") ?? 0) > caseCount / 4, JSON.stringify([...seen]));

    assert.equal((await fetch(`${server.url}/ready`)).status, 200);
    const ok = await postJson(`${server.url}/execute`, {
      action: "echo",
      payload: { after: "fuzz" },
      nonce: "after-fuzz",
    });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.status, "executed");
  });
});

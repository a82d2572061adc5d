import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { create, type JsonObject, toBinary, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { ExecuteRequestSchema, ExecutionService, VerifyReceiptRequestSchema } from "../gen/openexec/v1/execution_pb.js";
import { clientFor, postJson, protocols } from "./support/clients.js";
import { connectCall, envelope, grpcCall, grpcWebCall, type RawAnswer } from "./support/raw-rpc.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

/**
 * JSON object keys are data: "constructor", "prototype" and friends round-trip
 * on every protocol with one fingerprint; "__proto__", which JavaScript JSON
 * and protobuf-es decoding turn into a prototype, is refused everywhere alike
 * (400 / INVALID_ARGUMENT, reason reserved_key) at any depth.
 */
describe("reserved and prototype-like keys", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    assert.equal((await fetch(`${server.url}/ready`)).status, 200);
    await server.close();
  });

  const execute = "/openexec.v1.ExecutionService/Execute";
  const verify = "/openexec.v1.ExecutionService/VerifyReceipt";
  const utf8 = (text: string) => new TextEncoder().encode(text);

  const keyed = JSON.parse(
    '{"constructor":{"prototype":1,"constructor":[{"hasOwnProperty":true}]},"prototype":"x","toString":2,"valueOf":null,"__defineGetter__":{"__lookupSetter__":"y"}}',
  ) as JsonObject;

  it("REST: constructor and prototype keys execute, replay on every RPC protocol with the same fingerprint, and verify", async () => {
    const nonce = "keys-1";
    const first = await postJson(`${server.url}/execute`, { action: "echo", payload: keyed, nonce });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual(first.body.result, { echo: keyed });
    // The server holds its ledger exclusively: read it through the server's own store.
    const stored = await server.store.findById(first.body.id);
    assert.ok(stored?.status === "executed");
    // The stored result is the returned result, member for member.
    assert.deepEqual(stored.result, first.body.result);
    assert.deepEqual(Object.keys((stored.result as { echo: JsonObject }).echo).sort(), Object.keys(keyed).sort());
    const verified = await postJson(`${server.url}/receipts/verify`, {
      exec_id: first.body.id,
      result: first.body.result,
      receipt: first.body.receipt,
    });
    assert.deepEqual(verified.body, { valid: true });

    for (const protocol of protocols) {
      const client = clientFor(ExecutionService, protocol, server.url);
      const again = await client.execute({ action: "echo", payload: keyed, nonce });
      assert.equal(again.replayed, true, protocol);
      assert.equal(again.id, first.body.id, protocol);
      assert.equal(again.receipt, first.body.receipt, protocol);
      assert.deepEqual(toJson(ValueSchema, again.result ?? create(ValueSchema)), { echo: keyed }, protocol);
      const valid = await client.verifyReceipt({ execId: again.id, receipt: again.receipt, result: again.result });
      assert.equal(valid.valid, true, protocol);
    }
  });

  it("every RPC protocol: constructor and prototype keys execute there first and replay over REST", async () => {
    for (const protocol of protocols) {
      const nonce = `keys-rpc-${protocol}`;
      const client = clientFor(ExecutionService, protocol, server.url);
      const first = await client.execute({ action: "echo", payload: keyed, nonce });
      assert.equal(first.replayed, false);
      const rest = await postJson(`${server.url}/execute`, { action: "echo", payload: keyed, nonce });
      assert.equal(rest.status, 200, `${protocol}: ${JSON.stringify(rest.body)}`);
      assert.equal(rest.body.replayed, true);
      assert.equal(rest.body.id, first.id);
      assert.deepEqual(rest.body.result, { echo: keyed });
    }
  });

  function assertReserved(answer: RawAnswer, protocol: string): void {
    const context = `${protocol}: ${JSON.stringify({ ...answer, body: new TextDecoder().decode(answer.body) })}`;
    assert.equal(answer.code, "invalid_argument", context);
    assert.equal(answer.status, protocol.startsWith("connect") ? 400 : 200, context);
    assert.equal(answer.reason, "reserved_key", context);
    assert.equal(answer.detailReason, "reserved_key", context);
  }

  const payloads = [
    '{"__proto__":{"x":1}}',
    '{"__proto__":1}',
    '{"a":{"b":[{"c":{"__proto__":null}}]}}',
    '{"a":[[{"\\u005f_proto__":"escaped"}]]}',
  ];

  for (const payload of payloads) {
    it(`REST: a payload ${payload} is 400 reserved_key, and the nonce stays free`, async () => {
      const nonce = `rk-${payloads.indexOf(payload)}`;
      const answer = await postJson(
        `${server.url}/execute`,
        `{"action":"echo","payload":${payload},"nonce":"${nonce}"}`,
      );
      assert.equal(answer.status, 400);
      assert.equal(answer.headers.get("openexec-reason"), "reserved_key");
      assert.equal(answer.body.reason, "reserved_key");
      assert.equal((await postJson(`${server.url}/execute`, { action: "echo", payload: {}, nonce })).status, 200);
    });

    it(`REST: a /receipts/verify result ${payload} is 400 reserved_key`, async () => {
      const answer = await postJson(
        `${server.url}/receipts/verify`,
        `{"exec_id":"x","receipt":"00","result":${payload}}`,
      );
      assert.equal(answer.status, 400);
      assert.equal(answer.body.reason, "reserved_key");
    });

    const body = `{"action":"echo","payload":${payload},"nonce":"rk-json"}`;
    const verifyBody = `{"execId":"x","receipt":"00","result":${payload}}`;
    for (const [protocol, call] of [
      ["connect json", (path: string, text: string) => connectCall(server.url, path, "application/json", text)],
      [
        "grpc+json",
        (path: string, text: string) => grpcCall(server.url, path, "application/grpc+json", envelope(utf8(text))),
      ],
      [
        "grpc-web+json",
        (path: string, text: string) =>
          grpcWebCall(server.url, path, "application/grpc-web+json", envelope(utf8(text))),
      ],
    ] as const) {
      it(`${protocol}: payload ${payload} and the same VerifyReceipt result are INVALID_ARGUMENT reserved_key`, async () => {
        assertReserved(await call(execute, body), protocol);
        assertReserved(await call(verify, verifyBody), protocol);
      });
    }
  }

  it("compressed JSON: a reserved key is INVALID_ARGUMENT reserved_key on Connect, gRPC+json and gRPC-web+json", async () => {
    const body = gzipSync('{"action":"echo","payload":{"a":{"__proto__":[]}},"nonce":"rk-gz"}');
    assertReserved(
      await connectCall(server.url, execute, "application/json", body, { "content-encoding": "gzip" }),
      "connect json gzip",
    );
    assertReserved(
      await grpcCall(server.url, execute, "application/grpc+json", envelope(body, 1), { "grpc-encoding": "gzip" }),
      "grpc+json gzip",
    );
    assertReserved(
      await grpcWebCall(server.url, execute, "application/grpc-web+json", envelope(body, 1), {
        "grpc-encoding": "gzip",
      }),
      "grpc-web+json gzip",
    );
  });

  it("connect GET: a reserved key in a JSON message= is INVALID_ARGUMENT reserved_key", async () => {
    const message = encodeURIComponent('{"__proto__":{}}');
    const answer = await connectCall(
      server.url,
      `/openexec.v1.InfoService/GetHealth?encoding=json&message=${message}`,
      "",
      undefined,
    );
    assertReserved(answer, "connect get");
  });

  /**
   * Binary messages with a Struct map key "__proto__": encoded with a
   * same-length stand-in key, then patched (protobuf-es itself cannot encode one).
   */
  const standIn = "__protoXX";
  const patch = (bytes: Uint8Array) => {
    const out = Buffer.from(bytes);
    let at = out.indexOf(standIn);
    assert.ok(at >= 0);
    while (at >= 0) {
      out.write("__proto__", at);
      at = out.indexOf(standIn);
    }
    return new Uint8Array(out);
  };
  const binaryExecute = patch(
    toBinary(
      ExecuteRequestSchema,
      create(ExecuteRequestSchema, { action: "echo", nonce: "rk-bin", payload: { a: [{ b: { [standIn]: 1 } }] } }),
    ),
  );
  const binaryTopLevel = patch(
    toBinary(
      ExecuteRequestSchema,
      create(ExecuteRequestSchema, { action: "echo", nonce: "rk-bin2", payload: { [standIn]: { x: 1 } } }),
    ),
  );
  const binaryVerify = patch(
    toBinary(
      VerifyReceiptRequestSchema,
      create(VerifyReceiptRequestSchema, {
        execId: "x",
        receipt: "00",
        result: {
          kind: {
            case: "structValue",
            value: { fields: { [standIn]: { kind: { case: "numberValue", value: 1 } } } },
          },
        },
      }),
    ),
  );
  for (const [name, path, message] of [
    ["a nested Execute payload key", execute, binaryExecute],
    ["a top-level Execute payload key", execute, binaryTopLevel],
    ["a VerifyReceipt result key", verify, binaryVerify],
  ] as const) {
    it(`binary: ${name} "__proto__" is INVALID_ARGUMENT reserved_key on Connect, gRPC and gRPC-web`, async () => {
      assertReserved(await connectCall(server.url, path, "application/proto", message), "connect proto");
      assertReserved(await grpcCall(server.url, path, "application/grpc", envelope(message)), "grpc");
      assertReserved(await grpcWebCall(server.url, path, "application/grpc-web+proto", envelope(message)), "grpc-web");
      const gzip = new Uint8Array(
        await new Response(new Blob([message]).stream().pipeThrough(new CompressionStream("gzip"))).arrayBuffer(),
      );
      assertReserved(
        await grpcCall(server.url, path, "application/grpc", envelope(gzip, 1), { "grpc-encoding": "gzip" }),
        "grpc gzip",
      );
      assertReserved(
        await connectCall(server.url, path, "application/proto", gzip, { "content-encoding": "gzip" }),
        "connect proto gzip",
      );
    });
  }
});

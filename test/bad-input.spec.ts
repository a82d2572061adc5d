import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create, type JsonObject, toBinary } from "@bufbuild/protobuf";
import { ExecuteRequestSchema, VerifyReceiptRequestSchema } from "../gen/openexec/v1/execution_pb.js";
import { postJson } from "./support/clients.js";
import { connectCall, envelope, grpcCall, grpcWebCall, type RawAnswer } from "./support/raw-rpc.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

/** Every kind of bad request over REST: exact status, code and reason; the server stays ready. */
describe("bad input over REST", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ OPENEXEC_MAX_BODY_BYTES: "4096", OPENEXEC_MAX_JSON_DEPTH: "8" });
  });
  after(async () => {
    // Nothing above may have hurt the server.
    assert.equal((await fetch(`${server.url}/ready`)).status, 200);
    await server.close();
  });

  const deep = (levels: number) => `${"[".repeat(levels)}${"]".repeat(levels)}`;
  const cases: Array<{ name: string; body: string; status: number; code: string; reason: string; type?: string }> = [
    { name: "malformed JSON", body: '{"action":', status: 400, code: "invalid_argument", reason: "body_malformed" },
    { name: "empty body", body: "", status: 400, code: "invalid_argument", reason: "body_malformed" },
    { name: "a JSON array body", body: "[]", status: 400, code: "invalid_argument", reason: "body_malformed" },
    { name: "a JSON string body", body: '"echo"', status: 400, code: "invalid_argument", reason: "body_malformed" },
    {
      name: "invalid UTF-8",
      body: '{"action":"echo","payload":{"m":"\xff"},"nonce":"u"}',
      status: 400,
      code: "invalid_argument",
      reason: "body_malformed",
    },
    {
      name: "duplicate keys",
      body: '{"action":"echo","payload":{"a":1,"a":2},"nonce":"dup"}',
      status: 400,
      code: "invalid_argument",
      reason: "duplicate_key",
    },
    {
      name: "a lone surrogate",
      body: '{"action":"echo","payload":{"a":"\\ud800"},"nonce":"sur"}',
      status: 400,
      code: "invalid_argument",
      reason: "body_malformed",
    },
    {
      name: "a number beyond a double",
      body: '{"action":"add","payload":{"a":1e400,"b":1},"nonce":"big"}',
      status: 400,
      code: "invalid_argument",
      reason: "body_malformed",
    },
    {
      name: "nesting past the limit",
      body: `{"action":"echo","payload":{"a":${deep(8)}},"nonce":"deep"}`,
      status: 400,
      code: "invalid_argument",
      reason: "body_too_deep",
    },
    {
      name: "missing action",
      body: '{"payload":{},"nonce":"n1"}',
      status: 400,
      code: "invalid_argument",
      reason: "action_invalid",
    },
    {
      name: "action of the wrong type",
      body: '{"action":7,"payload":{},"nonce":"n1"}',
      status: 400,
      code: "invalid_argument",
      reason: "action_invalid",
    },
    {
      name: "action outside the name pattern",
      body: '{"action":"Echo!","payload":{},"nonce":"n1"}',
      status: 400,
      code: "invalid_argument",
      reason: "action_invalid",
    },
    {
      name: "missing nonce",
      body: '{"action":"echo","payload":{}}',
      status: 400,
      code: "invalid_argument",
      reason: "nonce_invalid",
    },
    {
      name: "empty nonce",
      body: '{"action":"echo","payload":{},"nonce":""}',
      status: 400,
      code: "invalid_argument",
      reason: "nonce_invalid",
    },
    {
      name: "nonce too long",
      body: `{"action":"echo","payload":{},"nonce":"${"n".repeat(129)}"}`,
      status: 400,
      code: "invalid_argument",
      reason: "nonce_invalid",
    },
    {
      name: "nonce outside the character set",
      body: '{"action":"echo","payload":{},"nonce":"a b"}',
      status: 400,
      code: "invalid_argument",
      reason: "nonce_invalid",
    },
    {
      name: "nonce of the wrong type",
      body: '{"action":"echo","payload":{},"nonce":12}',
      status: 400,
      code: "invalid_argument",
      reason: "nonce_invalid",
    },
    {
      name: "missing payload",
      body: '{"action":"echo","nonce":"p1"}',
      status: 400,
      code: "invalid_argument",
      reason: "payload_invalid",
    },
    {
      name: "payload an array",
      body: '{"action":"echo","payload":[1],"nonce":"p1"}',
      status: 400,
      code: "invalid_argument",
      reason: "payload_invalid",
    },
    {
      name: "payload null",
      body: '{"action":"echo","payload":null,"nonce":"p1"}',
      status: 400,
      code: "invalid_argument",
      reason: "payload_invalid",
    },
    {
      name: "an unknown field",
      body: '{"action":"echo","payload":{},"nonce":"p1","tenant":"x"}',
      status: 400,
      code: "invalid_argument",
      reason: "field_invalid",
    },
    {
      name: "add with a string operand",
      body: '{"action":"add","payload":{"a":"1","b":2},"nonce":"t1"}',
      status: 400,
      code: "invalid_argument",
      reason: "action_input_invalid",
    },
    {
      name: "add with an extra field",
      body: '{"action":"add","payload":{"a":1,"b":2,"c":3},"nonce":"t1"}',
      status: 400,
      code: "invalid_argument",
      reason: "action_input_invalid",
    },
    {
      name: "add overflowing a double",
      body: '{"action":"add","payload":{"a":1.7e308,"b":1.7e308},"nonce":"t1"}',
      status: 400,
      code: "invalid_argument",
      reason: "action_input_invalid",
    },
    {
      name: "counter.add with a fractional delta",
      body: '{"action":"counter.add","payload":{"key":"k","delta":0.5},"nonce":"t1"}',
      status: 400,
      code: "invalid_argument",
      reason: "action_input_invalid",
    },
    {
      name: "counter.add without a key",
      body: '{"action":"counter.add","payload":{"delta":1},"nonce":"t1"}',
      status: 400,
      code: "invalid_argument",
      reason: "action_input_invalid",
    },
    {
      name: "an unknown action",
      body: '{"action":"rm.rf","payload":{},"nonce":"t1"}',
      status: 404,
      code: "not_found",
      reason: "unknown_action",
    },
    {
      name: "a form-encoded body",
      body: "action=echo",
      status: 415,
      code: "invalid_argument",
      reason: "unsupported_media_type",
      type: "application/x-www-form-urlencoded",
    },
    {
      name: "a body over the size limit",
      body: JSON.stringify({ action: "echo", payload: { pad: "x".repeat(5000) }, nonce: "large" }),
      status: 413,
      code: "resource_exhausted",
      reason: "body_too_large",
    },
  ];

  for (const c of cases) {
    it(`${c.name}: ${c.status} ${c.reason}`, async () => {
      const response = await fetch(`${server.url}/execute`, {
        method: "POST",
        headers: { "content-type": c.type ?? "application/json" },
        body: c.name === "invalid UTF-8" ? Buffer.from(c.body, "latin1") : c.body,
      });
      assert.equal(response.status, c.status);
      assert.equal(response.headers.get("openexec-reason"), c.reason);
      const body = (await response.json()) as { code: string; reason: string; message: string };
      assert.equal(body.code, c.code);
      assert.equal(body.reason, c.reason);
      assert.ok(body.message.length > 0);
    });
  }

  it("a payload at exactly the depth limit runs, and echo may wrap it one level deeper", async () => {
    // The payload object is level 1: {"a": [[[[[[[]]]]]]]} is 8 levels.
    const payload = JSON.parse(`{"a":${deep(7)}}`);
    const answer = await postJson(`${server.url}/execute`, { action: "echo", payload, nonce: "at-limit" });
    assert.equal(answer.status, 200);
    assert.equal(answer.body.status, "executed");
    const verified = await postJson(`${server.url}/receipts/verify`, {
      exec_id: answer.body.id,
      result: answer.body.result,
      receipt: answer.body.receipt,
    });
    assert.deepEqual(verified.body, { valid: true });
  });

  it("a refused request consumes no nonce", async () => {
    const refused = await postJson(`${server.url}/execute`, {
      action: "add",
      payload: { a: "x", b: 1 },
      nonce: "kept",
    });
    assert.equal(refused.status, 400);
    const ok = await postJson(`${server.url}/execute`, { action: "add", payload: { a: 1, b: 1 }, nonce: "kept" });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.replayed, false);
  });

  it("a chunked body over the limit is cut off with 413", async () => {
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 10; i++) controller.enqueue(new TextEncoder().encode("x".repeat(1000)));
        controller.close();
      },
    });
    const response = await fetch(`${server.url}/execute`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: stream,
      duplex: "half",
    } as RequestInit);
    assert.equal(response.status, 413);
  });

  it("verify: bad shapes are 400, unknown ids and mismatches are valid:false", async () => {
    const verify = (body: unknown) => postJson(`${server.url}/receipts/verify`, body);
    assert.equal((await verify({ result: {}, receipt: "00" })).status, 400);
    assert.equal((await verify({ exec_id: 1, result: {}, receipt: "00" })).body.reason, "field_invalid");
    assert.deepEqual((await verify({ exec_id: "nope", result: {}, receipt: "00" })).body, { valid: false });
    assert.deepEqual((await verify({ exec_id: "nope", result: {}, receipt: "a".repeat(64) })).body, { valid: false });
    assert.deepEqual((await verify({ exec_id: "nope", result: "not json {", receipt: "zz" })).body, { valid: false });
  });

  it("unknown paths are 404 and wrong methods 405, as JSON", async () => {
    const missing = await fetch(`${server.url}/nope`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { reason: string }).reason, "route_not_found");
    const wrong = await fetch(`${server.url}/execute`);
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get("allow"), "POST");
    assert.equal(((await wrong.json()) as { reason: string }).reason, "method_not_allowed");
    const postHealth = await fetch(`${server.url}/health`, { method: "POST" });
    assert.equal(postHealth.status, 405);
  });
});

/**
 * The same kinds of bad input over every RPC protocol: always INVALID_ARGUMENT
 * (Connect HTTP 400) with the reason in the ErrorDetail and in `openexec-reason`,
 * never INTERNAL. Each of these was answered 500 / grpc-status 13, or accepted, before.
 */
describe("bad input over RPC", () => {
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

  /** One JSON body over Connect, gRPC+json and gRPC-web+json. */
  const jsonWays = (path: string, body: string): Array<[string, () => Promise<RawAnswer>]> => [
    ["connect json", () => connectCall(server.url, path, "application/json", body)],
    ["grpc+json", () => grpcCall(server.url, path, "application/grpc+json", envelope(utf8(body)))],
    ["grpc-web+json", () => grpcWebCall(server.url, path, "application/grpc-web+json", envelope(utf8(body)))],
  ];
  /** One binary message over Connect, gRPC and gRPC-web. */
  const binaryWays = (path: string, message: Uint8Array): Array<[string, () => Promise<RawAnswer>]> => [
    ["connect proto", () => connectCall(server.url, path, "application/proto", message)],
    ["grpc", () => grpcCall(server.url, path, "application/grpc", envelope(message))],
    ["grpc-web", () => grpcWebCall(server.url, path, "application/grpc-web+proto", envelope(message))],
  ];

  function assertRefused(answer: RawAnswer, reason: string, protocol: string): void {
    const context = `${protocol}: ${JSON.stringify({ ...answer, body: new TextDecoder().decode(answer.body) })}`;
    assert.equal(answer.code, "invalid_argument", context);
    assert.equal(answer.status, protocol.startsWith("connect") ? 400 : 200, context);
    assert.equal(answer.reason, reason, context);
    assert.equal(answer.detailReason, reason, context);
  }

  const jsonCases: Array<[string, string, string, string]> = [
    [
      "a number beyond a double (1e400)",
      execute,
      '{"action":"add","payload":{"a":1e400,"b":1},"nonce":"r1"}',
      "body_malformed",
    ],
    [
      "a number beyond a double (-1e400)",
      execute,
      '{"action":"add","payload":{"a":-1e400,"b":1},"nonce":"r2"}',
      "body_malformed",
    ],
    [
      "a number that rounds to infinity (1.7976931348623159e308)",
      execute,
      '{"action":"echo","payload":{"a":[1.7976931348623159e308]},"nonce":"r3"}',
      "body_malformed",
    ],
    ["a lone surrogate", execute, '{"action":"echo","payload":{"a":"\\ud800"},"nonce":"r4"}', "body_malformed"],
    ["a lone surrogate in a key", execute, '{"action":"echo","payload":{"\\udc00":1},"nonce":"r5"}', "body_malformed"],
    ["duplicate keys", execute, '{"action":"echo","payload":{"a":1,"a":2},"nonce":"r6"}', "duplicate_key"],
    ["invalid JSON", execute, '{"action":', "body_malformed"],
    ["an unknown field", execute, '{"action":"echo","payload":{},"nonce":"r7","tenant":"x"}', "field_invalid"],
    [
      "an unknown field (proto name style)",
      execute,
      '{"action":"echo","payload":{},"nonce":"r8","approval":"x"}',
      "field_invalid",
    ],
    // A wrong type has the reason REST gives it, on every protocol: one body, one meaning.
    ["an action of the wrong type", execute, '{"action":7,"payload":{},"nonce":"r9"}', "action_invalid"],
    ["a nonce of the wrong type", execute, '{"action":"echo","payload":{},"nonce":5}', "nonce_invalid"],
    ["a payload that is an array", execute, '{"action":"echo","payload":[1],"nonce":"r9b"}', "payload_invalid"],
    ["a payload that is a string", execute, '{"action":"echo","payload":"s","nonce":"r9c"}', "payload_invalid"],
    ["a VerifyReceipt id of the wrong type", verify, '{"execId":7,"receipt":"00"}', "field_invalid"],
    ["an unknown field in VerifyReceipt", verify, '{"execId":"x","receipt":"00","extra":1}', "field_invalid"],
    [
      "a lone surrogate in a VerifyReceipt result",
      verify,
      '{"execId":"x","receipt":"00","result":"\\ud800"}',
      "body_malformed",
    ],
    [
      "a number beyond a double in a VerifyReceipt result",
      verify,
      '{"execId":"x","receipt":"00","result":{"a":1e400}}',
      "body_malformed",
    ],
  ];
  for (const [name, path, body, reason] of jsonCases) {
    for (const [protocol, call] of jsonWays(path, body)) {
      it(`${protocol}: ${name} is INVALID_ARGUMENT ${reason}`, async () => {
        assertRefused(await call(), reason, protocol);
      });
    }
  }

  const payloadWith = (value: number) =>
    toBinary(
      ExecuteRequestSchema,
      create(ExecuteRequestSchema, { action: "echo", nonce: "nan", payload: { a: { b: [value] } } as JsonObject }),
    );
  const resultWith = (value: number) =>
    toBinary(
      VerifyReceiptRequestSchema,
      create(VerifyReceiptRequestSchema, {
        execId: "x",
        receipt: "00",
        result: { kind: { case: "numberValue", value } },
      }),
    );
  for (const value of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
    for (const [what, path, message] of [
      ["Execute payload", execute, payloadWith(value)],
      ["VerifyReceipt result", verify, resultWith(value)],
    ] as const) {
      for (const [protocol, call] of binaryWays(path, message)) {
        it(`${protocol}: ${value} in a binary google.protobuf.Value (${what}) is INVALID_ARGUMENT body_malformed`, async () => {
          assertRefused(await call(), "body_malformed", protocol);
        });
      }
    }
  }

  // nonce (field 3, a string) sent with the varint wire type: protobuf-es would read it as the string anyway.
  const wrongWireType = Uint8Array.of(0x0a, 0x04, ...utf8("echo"), 0x12, 0x00, 0x18, 0x02, ...utf8("ww"));
  for (const [protocol, call] of binaryWays(execute, wrongWireType)) {
    it(`${protocol}: a field with another wire type is INVALID_ARGUMENT body_malformed, not read as a string`, async () => {
      assertRefused(await call(), "body_malformed", protocol);
    });
  }

  for (const [protocol, call] of binaryWays(execute, Uint8Array.of(0x0a, 0x05, 0x65))) {
    it(`${protocol}: a truncated binary message is INVALID_ARGUMENT body_malformed`, async () => {
      assertRefused(await call(), "body_malformed", protocol);
    });
  }

  for (const query of [
    "encoding=proto&base64=1&message=%25%25%25",
    "encoding=proto&base64=1&message=_w",
    "encoding=proto&message=%FF%FF",
    "encoding=json&message=%7B",
    "encoding=json&message=%7B%22nope%22%3A1%7D",
    "encoding=json&base64=1&message=!!",
    "encoding=proto&base64=1&compression=gzip&message=AAAA",
  ]) {
    it(`connect GET: an undecodable message= (${query}) is INVALID_ARGUMENT with a reason`, async () => {
      const answer = await connectCall(server.url, `/openexec.v1.InfoService/GetHealth?${query}`, "", undefined);
      assert.equal(answer.status, 400, new TextDecoder().decode(answer.body));
      assert.equal(answer.code, "invalid_argument");
      assert.match(answer.reason ?? "", /^(body_malformed|field_invalid)$/);
      assert.equal(answer.detailReason, answer.reason);
    });
  }

  for (const service of ["grpc.reflection.v1", "grpc.reflection.v1alpha"]) {
    const path = `/${service}.ServerReflection/ServerReflectionInfo`;
    const garbage = Uint8Array.of(0x0a, 0x7f, 0x01, 0x02);
    it(`gRPC: garbage sent to ${service} is INVALID_ARGUMENT body_malformed`, async () => {
      assertRefused(await grpcCall(server.url, path, "application/grpc", envelope(garbage)), "body_malformed", "grpc");
    });
    it(`gRPC+json: invalid JSON sent to ${service} is INVALID_ARGUMENT body_malformed`, async () => {
      assertRefused(
        await grpcCall(server.url, path, "application/grpc+json", envelope(utf8('{"host":'))),
        "body_malformed",
        "grpc",
      );
    });
  }
});

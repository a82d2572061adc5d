import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { postJson } from "./support/clients.js";
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

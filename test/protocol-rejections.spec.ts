import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { create, fromBinary, toBinary, toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { ServerReflectionRequestSchema } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ErrorDetailSchema } from "../gen/openexec/v1/error_pb.js";
import { ExecuteRequestSchema, ExecuteResponseSchema } from "../gen/openexec/v1/execution_pb.js";
import { InfoService } from "../gen/openexec/v1/info_pb.js";
import { type AnyJson, type ProtocolName, protocols } from "./support/clients.js";
import { envelope, grpcCall, grpcWebCall } from "./support/raw-rpc.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

/** A generated client whose calls go to `path` instead of the method's own. */
function clientTo(protocol: ProtocolName, baseUrl: string, path?: string) {
  const redirect: Interceptor = (next) => async (req) =>
    next(path === undefined ? req : { ...req, url: `${baseUrl}${path}` });
  const interceptors = [redirect];
  const transport =
    protocol === "grpc"
      ? createGrpcTransport({ baseUrl, interceptors })
      : protocol === "grpc-web"
        ? createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors })
        : createConnectTransport({
            baseUrl,
            httpVersion: protocol === "connect-h2" ? "2" : "1.1",
            useBinaryFormat: protocol === "connect-binary",
            interceptors,
          });
  return createClient(InfoService, transport);
}

/** The call fails with `code`, and the reason arrives in the ErrorDetail (not only as a header). */
async function expectRefusal(call: Promise<unknown>, code: Code, reason: string, message: string): Promise<void> {
  try {
    await call;
  } catch (caught) {
    assert.ok(caught instanceof ConnectError, `expected a ConnectError, got ${String(caught)}`);
    assert.equal(Code[caught.code], Code[code]);
    assert.equal(caught.rawMessage, message);
    assert.equal(caught.findDetails(ErrorDetailSchema)[0]?.reason, reason);
    assert.equal(caught.metadata.get("openexec-reason"), reason);
    return;
  }
  assert.fail("expected the call to fail");
}

interface RawH2Answer {
  readonly headers: http2.IncomingHttpHeaders;
  readonly headersEndStream: boolean;
  readonly trailers: http2.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** One raw HTTP/2 request, reporting whether the first HEADERS frame ended the stream. */
function h2Request(url: string, headers: http2.OutgoingHttpHeaders, body: Uint8Array): Promise<RawH2Answer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url);
    session.on("error", reject);
    const stream = session.request(headers);
    let answer: Omit<RawH2Answer, "body"> = { headers: {}, headersEndStream: false, trailers: {} };
    const chunks: Buffer[] = [];
    stream.on("response", (h, flags) => {
      answer = { ...answer, headers: h, headersEndStream: (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0 };
    });
    stream.on("trailers", (t) => {
      answer = { ...answer, trailers: t };
    });
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => {
      session.close();
      resolve({ ...answer, body: Buffer.concat(chunks) });
    });
    stream.on("error", reject);
    stream.end(Buffer.from(body));
  });
}

const emptyGrpcMessage = new Uint8Array([0, 0, 0, 0, 0]);
const routeMessage = "no such path; see docs/API.md";
const hostMessage = "this server does not answer to that Host; see OPENEXEC_ALLOWED_HOSTS";

function assertGrpcTrailersOnly(answer: RawH2Answer, status: string, reason: string): void {
  assert.equal(answer.headers[":status"], 200);
  assert.equal(answer.headersEndStream, true, "a trailers-only answer is one HEADERS frame with END_STREAM");
  assert.equal(answer.body.length, 0);
  assert.equal(answer.headers["content-type"], "application/grpc+proto");
  assert.equal(answer.headers["grpc-status"], status);
  assert.equal(answer.headers["openexec-reason"], reason);
  const details = answer.headers["grpc-status-details-bin"];
  assert.equal(typeof details, "string");
  // The google.rpc.Status in grpc-status-details-bin, decoded as gRPC clients do.
  const decoded = findTrailerError(new Headers({ "grpc-status-details-bin": details as string }));
  assert.equal(decoded?.code, Number(status));
  assert.equal(decoded?.findDetails(ErrorDetailSchema)[0]?.reason, reason);
}

describe("refusals before an RPC runs speak the request's protocol", () => {
  let server: TestServer;
  let strict: TestServer;
  before(async () => {
    server = await startTestServer();
    // 127.0.0.1 is not among the allowed names, so every request here fails the Host check.
    strict = await startTestServer({ OPENEXEC_ALLOWED_HOSTS: "executor.internal" });
  });
  after(async () => {
    await server.close();
    await strict.close();
  });

  for (const protocol of protocols) {
    it(`${protocol}: an unknown method or service is NOT_FOUND route_not_found, with its ErrorDetail`, async () => {
      await expectRefusal(
        clientTo(protocol, server.url, "/openexec.v1.InfoService/NoSuchMethod").getHealth({}),
        Code.NotFound,
        "route_not_found",
        routeMessage,
      );
      await expectRefusal(
        clientTo(protocol, server.url, "/openexec.v1.NoSuchService/GetHealth").getHealth({}),
        Code.NotFound,
        "route_not_found",
        routeMessage,
      );
      // The client itself is fine: the real method answers.
      assert.equal((await clientTo(protocol, server.url).getHealth({})).status, "healthy");
    });

    it(`${protocol}: a Host the server does not answer to is PERMISSION_DENIED host_not_allowed`, async () => {
      await expectRefusal(
        clientTo(protocol, strict.url).getHealth({}),
        Code.PermissionDenied,
        "host_not_allowed",
        hostMessage,
      );
    });
  }

  it("gRPC over raw HTTP/2: trailers-only, HTTP 200, grpc-status, the ErrorDetail and openexec-reason", async () => {
    const unknown = await h2Request(
      server.url,
      {
        ":method": "POST",
        ":path": "/openexec.v1.InfoService/NoSuchMethod",
        "content-type": "application/grpc+proto",
        te: "trailers",
      },
      emptyGrpcMessage,
    );
    assertGrpcTrailersOnly(unknown, "5", "route_not_found");
    assert.equal(decodeURIComponent(String(unknown.headers["grpc-message"])), routeMessage);

    const foreignHost = await h2Request(
      server.url,
      {
        ":method": "POST",
        ":path": "/openexec.v1.InfoService/GetHealth",
        ":authority": "evil.example",
        "content-type": "application/grpc+proto",
        te: "trailers",
      },
      emptyGrpcMessage,
    );
    assertGrpcTrailersOnly(foreignHost, "7", "host_not_allowed");
  });

  it("gRPC-web: HTTP 200 with the status in the headers", async () => {
    const response = await fetch(`${server.url}/openexec.v1.NoSuchService/GetHealth`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
      body: emptyGrpcMessage,
    });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "application/grpc-web+proto");
    assert.equal(response.headers.get("grpc-status"), "5");
    assert.equal(response.headers.get("openexec-reason"), "route_not_found");
    assert.ok(response.headers.get("grpc-status-details-bin"));
    assert.equal((await response.arrayBuffer()).byteLength, 0);
  });

  it("Connect: the Connect error JSON with the Connect HTTP status and openexec-reason", async () => {
    const response = await fetch(`${server.url}/openexec.v1.NoSuchService/GetHealth`, {
      method: "POST",
      headers: { "content-type": "application/json", "connect-protocol-version": "1" },
      body: "{}",
    });
    assert.equal(response.status, 404);
    assert.equal(response.headers.get("content-type"), "application/json");
    assert.equal(response.headers.get("openexec-reason"), "route_not_found");
    const body = (await response.json()) as AnyJson;
    assert.equal(body.code, "not_found");
    assert.equal(body.message, routeMessage);
    assert.equal(body.details[0].type, "openexec.v1.ErrorDetail");
    assert.equal(body.details[0].debug.reason, "route_not_found");

    // A Connect request on a real RPC path needs no Connect-Protocol-Version to be recognised.
    const host = await fetch(`${strict.url}/openexec.v1.InfoService/GetHealth`, {
      method: "POST",
      headers: { "content-type": "application/proto" },
      body: new Uint8Array(0),
    });
    assert.equal(host.status, 403);
    assert.equal(host.headers.get("openexec-reason"), "host_not_allowed");
    assert.equal(((await host.json()) as AnyJson).code, "permission_denied");
  });

  it("Connect streaming: HTTP 200 and an end-stream message with the error and openexec-reason", async () => {
    const response = await fetch(`${server.url}/openexec.v1.NoSuchService/Watch`, {
      method: "POST",
      headers: { "content-type": "application/connect+json" },
      body: new Uint8Array([0, 0, 0, 0, 2, 0x7b, 0x7d]),
    });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "application/connect+json");
    const body = Buffer.from(await response.arrayBuffer());
    assert.equal(body[0], 0b10, "one end-stream envelope");
    assert.equal(body.readUInt32BE(1), body.length - 5);
    const end = JSON.parse(body.subarray(5).toString("utf8")) as AnyJson;
    assert.equal(end.error.code, "not_found");
    assert.equal(end.error.message, routeMessage);
    assert.equal(end.error.details[0].debug.reason, "route_not_found");
    assert.deepEqual(end.metadata["openexec-reason"], ["route_not_found"]);
  });

  it("REST paths and plain HTTP keep the REST JSON error", async () => {
    const rest = await fetch(`${strict.url}/health`, { headers: { "content-type": "application/grpc" } });
    assert.equal(rest.status, 403);
    assert.deepEqual(await rest.json(), {
      code: "permission_denied",
      reason: "host_not_allowed",
      message: hostMessage,
    });
    const plain = await fetch(`${server.url}/nowhere`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(plain.status, 404);
    assert.deepEqual(await plain.json(), { code: "not_found", reason: "route_not_found", message: routeMessage });
  });

  it("a method an RPC path does not accept (OPTIONS, a preflight, GET on Execute) is 405 with Allow, like REST", async () => {
    const preflight = await fetch(`${server.url}/openexec.v1.ExecutionService/Execute`, {
      method: "OPTIONS",
      headers: { origin: "https://app.example", "access-control-request-method": "POST" },
    });
    assert.equal(preflight.status, 405);
    assert.equal(preflight.headers.get("allow"), "POST");
    assert.equal(preflight.headers.get("openexec-reason"), "method_not_allowed");
    assert.equal(preflight.headers.get("access-control-allow-origin"), null);
    assert.deepEqual(await preflight.json(), {
      code: "unimplemented",
      reason: "method_not_allowed",
      message: "/openexec.v1.ExecutionService/Execute accepts POST",
    });
    const getExecute = await fetch(`${server.url}/openexec.v1.ExecutionService/Execute`);
    assert.equal(getExecute.status, 405);
    assert.equal(((await getExecute.json()) as AnyJson).reason, "method_not_allowed");
    // GetHealth has no side effects, so Connect also serves it over GET.
    const options = await fetch(`${server.url}/openexec.v1.InfoService/GetHealth`, { method: "OPTIONS" });
    assert.equal(options.status, 405);
    assert.equal(options.headers.get("allow"), "POST, GET");
  });
});

describe("a gRPC frame flagged other than 0 or 1 is refused, and nothing runs", () => {
  const execute = "/openexec.v1.ExecutionService/Execute";
  const servers: Array<{ name: string; server: TestServer }> = [];
  before(async () => {
    const env = { OPENEXEC_ALLOWED_ACTIONS: "echo,counter.add" };
    servers.push({ name: "lean path on", server: await startTestServer(env) });
    servers.push({
      name: "OPENEXEC_LEAN_UNARY=off",
      server: await startTestServer({ ...env, OPENEXEC_LEAN_UNARY: "off" }),
    });
  });
  after(async () => {
    await Promise.all(servers.map(({ server }) => server.close()));
  });

  const addition = (key: string, delta: number, nonce: string) =>
    toBinary(
      ExecuteRequestSchema,
      create(ExecuteRequestSchema, { action: "counter.add", payload: { key, delta }, nonce }),
    );
  const grpcJson = (key: string, delta: number, nonce: string) =>
    new TextEncoder().encode(JSON.stringify({ action: "counter.add", payload: { key, delta }, nonce }));
  const transports = [
    { wire: "gRPC", contentType: "application/grpc", call: grpcCall, message: addition },
    { wire: "gRPC+json", contentType: "application/grpc+json", call: grpcCall, message: grpcJson },
    { wire: "gRPC-web", contentType: "application/grpc-web+proto", call: grpcWebCall, message: addition },
  ] as const;

  for (const index of [0, 1]) {
    for (const { wire, contentType, call, message } of transports) {
      for (const flags of [0x02, 0x80, 0x03, 0x81]) {
        it(`${wire}, flag ${flags} (${index === 0 ? "lean path on" : "OPENEXEC_LEAN_UNARY=off"}): INVALID_ARGUMENT body_malformed, no delta applied, nonce unspent`, async () => {
          const { server } = servers[index] ?? assert.fail();
          const key = `${wire}-${flags}`;
          const nonce = `flagged-${wire}-${flags}`.replace(/[^A-Za-z0-9._:-]/g, "_");
          const refused = await call(server.url, execute, contentType, envelope(message(key, 5, nonce), flags));
          assert.equal(refused.code, "invalid_argument", refused.message);
          assert.equal(refused.reason, "body_malformed");
          assert.equal(refused.detailReason, "body_malformed");
          assert.equal(
            refused.message,
            `malformed request: a gRPC frame's compressed flag must be 0 or 1, not ${flags}`,
          );
          // The same request, framed properly, runs for the first time: the delta of 5 was never applied.
          const ran = await grpcCall(server.url, execute, "application/grpc", envelope(addition(key, 1, nonce)));
          assert.equal(ran.code, "ok", ran.message);
          const response = toJson(ExecuteResponseSchema, fromBinary(ExecuteResponseSchema, ran.body)) as AnyJson;
          assert.equal(response.replayed, undefined, "not a replay");
          assert.deepEqual(response.result, { key, value: 1 });
        });
      }
    }
  }

  it("gRPC-web: a 0x80 frame before a good one is refused, not skipped", async () => {
    const { server } = servers[1] ?? assert.fail();
    const good = envelope(addition("skip", 5, "skip-1"));
    const body = Buffer.concat([envelope(new Uint8Array(), 0x80), good]);
    const refused = await grpcWebCall(server.url, execute, "application/grpc-web+proto", body);
    assert.equal(refused.reason, "body_malformed");
    const ran = await grpcCall(server.url, execute, "application/grpc", envelope(addition("skip", 1, "skip-2")));
    assert.deepEqual((toJson(ExecuteResponseSchema, fromBinary(ExecuteResponseSchema, ran.body)) as AnyJson).result, {
      key: "skip",
      value: 1,
    });
  });

  it("a stream (gRPC reflection): a frame flagged 2 is refused", async () => {
    const { server } = servers[0] ?? assert.fail();
    const request = toBinary(
      ServerReflectionRequestSchema,
      create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } }),
    );
    const path = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
    const refused = await grpcCall(server.url, path, "application/grpc", envelope(request, 2));
    assert.equal(refused.code, "invalid_argument", refused.message);
    assert.equal(refused.reason, "body_malformed");
    assert.equal(refused.body.length, 0, "no answer to the flagged frame");
    const answered = await grpcCall(server.url, path, "application/grpc", envelope(request));
    assert.equal(answered.code, "ok");
    assert.ok(answered.body.length > 0);
  });
});

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import http from "node:http";
import http2 from "node:http2";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { ExecutionService } from "../gen/openexec/v1/execution_pb.js";
import { InfoService } from "../gen/openexec/v1/info_pb.js";
import { Authorization, ExecutionStatus } from "../gen/openexec/v1/receipt_pb.js";
import { reasonOf } from "../src/api/connect-errors.js";
import { packageRoot } from "../src/version.js";
import { clientFor, protocols } from "./support/clients.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

const exec = promisify(execFile);
const buf = `${packageRoot}/node_modules/.bin/buf`;

async function expectConnectError(call: Promise<unknown>, code: Code, reason: string): Promise<ConnectError> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    assert.equal(Code[error.code], Code[code]);
    assert.equal(reasonOf(error), reason);
    return error;
  }
  assert.fail("expected the call to fail");
}

/**
 * Every protocol through the generated clients. It runs twice: with the lean
 * unary path (the default) and with connect-es answering every request
 * (OPENEXEC_LEAN_UNARY=off), so both paths are held to the same tests.
 */
function everyProtocol(url: () => string): void {
  for (const protocol of protocols) {
    describe(protocol, () => {
      it("executes, replays, and verifies through the generated client", async () => {
        const client = clientFor(ExecutionService, protocol, url());
        const nonce = `proto-${protocol}`;
        const first = await client.execute({ action: "add", payload: { a: 1.5, b: 2 }, nonce });
        assert.equal(first.action, "add");
        assert.equal(first.status, ExecutionStatus.EXECUTED);
        assert.equal(first.replayed, false);
        assert.equal(first.approved, true);
        assert.equal(first.authorization, Authorization.DEMO);
        assert.deepEqual(first.result?.kind.case, "structValue");
        const again = await client.execute({ action: "add", payload: { b: 2, a: 1.5 }, nonce });
        assert.equal(again.replayed, true);
        assert.equal(again.id, first.id);
        assert.equal(again.receipt, first.receipt);

        const verified = await client.verifyReceipt({
          execId: first.id,
          receipt: first.receipt,
          result: { kind: { case: "stringValue", value: '{"sum":3.5}' } },
        });
        assert.equal(verified.valid, true);
        const forged = await client.verifyReceipt({
          execId: first.id,
          receipt: first.receipt,
          result: { kind: { case: "stringValue", value: '{"sum":4}' } },
        });
        assert.equal(forged.valid, false);
      });

      it("answers refusals with the Connect code and the reason detail", async () => {
        const client = clientFor(ExecutionService, protocol, url());
        await expectConnectError(
          client.execute({ action: "nope", payload: {}, nonce: `x-${protocol}` }),
          Code.NotFound,
          "unknown_action",
        );
        await expectConnectError(
          client.execute({ action: "echo", payload: {}, nonce: "bad nonce!" }),
          Code.InvalidArgument,
          "nonce_invalid",
        );
        await expectConnectError(
          client.execute({ action: "echo", nonce: `no-payload-${protocol}` }),
          Code.InvalidArgument,
          "payload_invalid",
        );
        await expectConnectError(
          client.execute({ action: "add", payload: { a: "1", b: 2 }, nonce: `typed-${protocol}` }),
          Code.InvalidArgument,
          "action_input_invalid",
        );
        await client.execute({ action: "echo", payload: { v: 1 }, nonce: `conflict-${protocol}` });
        await expectConnectError(
          client.execute({ action: "echo", payload: { v: 2 }, nonce: `conflict-${protocol}` }),
          Code.AlreadyExists,
          "nonce_reused",
        );
      });

      it("serves health and info", async () => {
        const info = clientFor(InfoService, protocol, url());
        const health = await info.getHealth({});
        assert.equal(health.status, "healthy");
        assert.equal(health.execMode, "demo");
        assert.equal((await info.getReadiness({})).ready, true);
        assert.equal((await info.getInfo({})).service, "OpenExec");
        const probe = clientFor(Health, protocol, url());
        assert.equal((await probe.check({ service: "" })).status, HealthCheckResponse_ServingStatus.SERVING);
        assert.equal(
          (await probe.check({ service: "openexec.v1.ExecutionService" })).status,
          HealthCheckResponse_ServingStatus.SERVING,
        );
        await assert.rejects(probe.check({ service: "nope.Service" }), (e: ConnectError) => e.code === Code.NotFound);
      });
    });
  }
}

describe("one port, every protocol", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  everyProtocol(() => server.url);

  describe("with OPENEXEC_LEAN_UNARY=off (connect-es answers every request)", () => {
    let connectEs: TestServer;
    before(async () => {
      connectEs = await startTestServer({ OPENEXEC_LEAN_UNARY: "off" });
    });
    after(() => connectEs.close());
    everyProtocol(() => connectEs.url);
  });

  it("gRPC reflection (v1 and v1alpha) lists services and serves descriptors with their imports", async () => {
    for (const service of [ServerReflection, ServerReflectionV1alpha]) {
      const client = clientFor(service, "grpc", server.url);
      const requests = (async function* () {
        yield { messageRequest: { case: "listServices" as const, value: "" } };
        yield { messageRequest: { case: "fileContainingSymbol" as const, value: "openexec.v1.ExecutionService" } };
        yield { messageRequest: { case: "fileContainingSymbol" as const, value: "no.such.Symbol" } };
      })();
      const answers = [];
      for await (const answer of client.serverReflectionInfo(requests)) answers.push(answer);
      assert.equal(answers.length, 3);
      const [list, files, missing] = answers;
      assert.equal(list?.messageResponse.case, "listServicesResponse");
      const names =
        list?.messageResponse.case === "listServicesResponse"
          ? list.messageResponse.value.service.map((s) => s.name)
          : [];
      assert.deepEqual(names, [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "openexec.v1.ExecutionService",
        "openexec.v1.InfoService",
        "openexec.v1.TransparencyLogService",
      ]);
      assert.equal(files?.messageResponse.case, "fileDescriptorResponse");
      if (files?.messageResponse.case === "fileDescriptorResponse") {
        // execution.proto plus struct.proto, envelope.proto and receipt.proto (and timestamp.proto).
        assert.ok(files.messageResponse.value.fileDescriptorProto.length >= 4);
      }
      assert.equal(missing?.messageResponse.case, "errorResponse");
      if (missing?.messageResponse.case === "errorResponse") {
        assert.equal(missing.messageResponse.value.errorCode, Code.NotFound);
      }
    }
  });

  it("buf curl: gRPC over h2c with reflection, Connect and gRPC-web over HTTP/1.1 with the schema", async () => {
    const data = (nonce: string) => JSON.stringify({ action: "echo", payload: { via: "buf" }, nonce });
    const grpc = await exec(buf, [
      "curl",
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "-d",
      data("buf-grpc"),
      `${server.url}/openexec.v1.ExecutionService/Execute`,
    ]);
    assert.deepEqual(JSON.parse(grpc.stdout).result, { echo: { via: "buf" } });
    for (const protocol of ["connect", "grpcweb"]) {
      const out = await exec(buf, [
        "curl",
        "--protocol",
        protocol,
        "--schema",
        `${packageRoot}/proto`,
        "-d",
        data(`buf-${protocol}`),
        `${server.url}/openexec.v1.ExecutionService/Execute`,
      ]);
      assert.deepEqual(JSON.parse(out.stdout).result, { echo: { via: "buf" } });
    }
    const health = await exec(buf, [
      "curl",
      "--protocol",
      "grpc",
      "-d",
      "{}",
      `${server.url}/grpc.health.v1.Health/Check`,
    ]);
    assert.deepEqual(JSON.parse(health.stdout), { status: "SERVING" });
    const list = await exec(buf, ["curl", "--protocol", "grpc", "--list-services", server.url]);
    assert.ok(list.stdout.split("\n").includes("openexec.v1.ExecutionService"));
  });

  it("malformed protobuf is INVALID_ARGUMENT on every protocol, never INTERNAL", async () => {
    const url = `${server.url}/openexec.v1.ExecutionService/Execute`;
    const garbage = new Uint8Array([0x0a, 0xff, 0xff]);
    const connectBinary = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/proto" },
      body: garbage,
    });
    assert.equal(connectBinary.status, 400);
    assert.equal(((await connectBinary.json()) as { code: string }).code, "invalid_argument");
    const framed = new Uint8Array([0, 0, 0, 0, garbage.length, ...garbage]);
    const grpcWeb = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto" },
      body: framed,
    });
    const text = Buffer.from(await grpcWeb.arrayBuffer()).toString("latin1");
    assert.match(`${grpcWeb.headers.get("grpc-status") ?? ""}${text}`, /grpc-status: ?3|^3/);
    const grpc = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const session = http2.connect(server.url);
      session.on("error", reject);
      const stream = session.request({
        ":method": "POST",
        ":path": "/openexec.v1.ExecutionService/Execute",
        "content-type": "application/grpc",
        te: "trailers",
      });
      let headers: Record<string, unknown> = {};
      stream.on("response", (h) => {
        headers = { ...h };
      });
      stream.on("trailers", (t) => {
        headers = { ...headers, ...t };
      });
      stream.on("end", () => {
        session.close();
        resolve(headers);
      });
      stream.on("error", reject);
      stream.resume();
      stream.end(Buffer.from(framed));
    });
    assert.equal(grpc["grpc-status"], "3");
  });

  it("a Host naming another server is refused (DNS rebinding), loopback names pass", async () => {
    const { port } = new URL(server.url);
    const ask = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const req = http.request({ host: "127.0.0.1", port, path: "/health", headers: { host } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        req.end();
      });
    assert.equal(await ask(`evil.example:${port}`), 403);
    assert.equal(await ask(`localhost:${port}`), 200);
    assert.equal(await ask(`[::1]:${port}`), 200);
  });

  it("an HTTP/1.0 request without Host gets a 400, and the server stays up", async () => {
    const reply = await new Promise<string>((resolve, reject) => {
      const { port } = new URL(server.url);
      const socket = connect(Number(port), "127.0.0.1", () => {
        socket.end(
          "POST /openexec.v1.InfoService/GetHealth HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        );
      });
      let data = "";
      socket.setEncoding("utf8").on("data", (chunk: string) => {
        data += chunk;
      });
      socket.on("end", () => resolve(data));
      socket.on("error", reject);
    });
    assert.match(reply, /^HTTP\/1\.[01] 400/);
    assert.equal((await fetch(`${server.url}/ready`)).status, 200);
  });
});

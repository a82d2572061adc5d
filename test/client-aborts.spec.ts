import assert from "node:assert/strict";
import http2 from "node:http2";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { type LoggedServer, startLoggedServer } from "./support/captured-log.js";

/** Waits until `done` holds, at most 10 s (a generous bound, not a timing assertion). */
async function until(done: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
}

const partialBody = '{"action":"echo","payload":{"msg":"';

describe("a client that aborts an upload is no server error", () => {
  let harness: LoggedServer;
  before(async () => {
    harness = await startLoggedServer();
  });
  after(() => harness.close());

  const aborted = () => harness.lines().filter((line) => line.msg === "client closed the request");
  /** Warn, error and fatal lines logged since line `from`. */
  const loud = (from = 0) =>
    harness
      .lines()
      .slice(from)
      .filter((line) => typeof line.level === "number" && line.level >= 40);

  it("HTTP/1.1: closing the connection mid-body logs one debug line, no warn or error, and answers nothing", async () => {
    const { port } = harness.server.address;
    const before = aborted().length;
    const logged = harness.lines().length;
    const received = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, "127.0.0.1", () => {
        socket.write(
          `POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n${partialBody}`,
        );
        setTimeout(() => socket.destroy(), 100);
      });
      let data = "";
      socket.setEncoding("utf8").on("data", (chunk: string) => {
        data += chunk;
      });
      socket.on("close", () => resolve(data));
      socket.on("error", reject);
    });
    assert.equal(received, "");
    await until(() => aborted().length > before || loud(logged).length > 0);
    assert.deepEqual(loud(logged), []);
    assert.equal(aborted().length, before + 1);
    assert.equal(aborted().at(-1)?.level, 20);
    assert.equal(aborted().at(-1)?.path, "/execute");
  });

  for (const how of ["RST_STREAM", "closing the connection"] as const) {
    it(`HTTP/2: ${how} mid-body logs one debug line, no warn or error`, async () => {
      const before = aborted().length;
      const logged = harness.lines().length;
      const session = http2.connect(`http://127.0.0.1:${harness.server.address.port}`);
      session.on("error", () => undefined);
      const stream = session.request({
        ":method": "POST",
        ":path": "/execute",
        "content-type": "application/json",
        "content-length": "1000",
      });
      stream.on("error", () => undefined);
      stream.write(partialBody);
      await new Promise((resolve) => setTimeout(resolve, 100));
      if (how === "RST_STREAM") stream.close(http2.constants.NGHTTP2_CANCEL);
      else session.destroy();
      await until(() => aborted().length > before || loud(logged).length > 0);
      session.destroy();
      assert.deepEqual(loud(logged), []);
      assert.equal(aborted().length, before + 1);
      assert.equal(aborted().at(-1)?.level, 20);
    });
  }

  it("an RPC (Connect over HTTP/1.1, gRPC over HTTP/2) aborted mid-body logs no warn or error either", async () => {
    const { port } = harness.server.address;
    const before = aborted().length;
    const logged = harness.lines().length;
    await new Promise<void>((resolve) => {
      const socket = connect(port, "127.0.0.1", () => {
        socket.write(
          `POST /openexec.v1.ExecutionService/Execute HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n${partialBody}`,
        );
        setTimeout(() => socket.destroy(), 100);
      });
      socket.on("error", () => undefined);
      socket.on("close", () => resolve());
    });
    await until(() => aborted().length > before || loud(logged).length > 0);
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => undefined);
    const stream = session.request({
      ":method": "POST",
      ":path": "/openexec.v1.ExecutionService/Execute",
      "content-type": "application/grpc",
      te: "trailers",
    });
    stream.on("error", () => undefined);
    // A gRPC frame header announcing 1000 bytes, then 3 of them.
    stream.write(Buffer.from([0, 0, 0, 3, 0xe8, 0x0a, 0x04, 0x65]));
    await new Promise((resolve) => setTimeout(resolve, 100));
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await new Promise((resolve) => stream.once("close", resolve));
    // Nothing to wait for on this path but the next request on the same session being answered.
    const ready = session.request({ ":path": "/ready" });
    ready.resume();
    await new Promise((resolve) => ready.once("close", resolve));
    session.destroy();
    await until(() => loud(logged).length > 0 || aborted().length > before);
    assert.deepEqual(loud(logged), []);
    // The cut gRPC call counts once, as what the server answered its incomplete frame.
    const metrics = await (await fetch(`${harness.server.url}/metrics`)).text();
    const grpcExecute = metrics
      .split("\n")
      .filter((line) => line.startsWith("grpc_server_handled_total") && line.includes('protocol="grpc"'))
      .map((line) => /grpc_code="(\w+)"\} (\d+)/.exec(line)?.slice(1).join(" "));
    assert.deepEqual(grpcExecute, ["InvalidArgument 1"]);
  });

  it("the server keeps answering", async () => {
    const response = await fetch(`${harness.server.url}/ready`);
    assert.equal(response.status, 200);
    assert.deepEqual(loud(), []);
  });
});
